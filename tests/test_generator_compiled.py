"""The compiled (numba) generator kernels equal the numpy kernels, the reference and the spec, bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from fzpack.errors import FzpackError  # noqa: E402
from fzpack.generator import InitSpec, compiled, generate, generate_numpy, random_mask, random_mask_rows  # noqa: E402
from fzpack.generator import kernels_compiled as kc  # noqa: E402
from fzpack.generator import kernels_numpy as kn  # noqa: E402
from fzpack.generator import reference as ref  # noqa: E402
from fzpack.generator import regen  # noqa: E402
from fzpack.generator.philox import philox_numpy, stream_key  # noqa: E402
from test_generator_values import BANKS, SPECS as REFERENCE_SPECS  # noqa: E402

ROOT = Path(__file__).parents[1]
VECTORS = json.loads((ROOT / "formats/vectors/generator.json").read_text(encoding="utf-8"))
# the reference tests' specs plus the unit normal and a negative-zero mean (sign handling in the kernels)
SPECS = [InitSpec("normal", 0.0, 1.0), InitSpec("normal", -0.0, 2.0), *REFERENCE_SPECS]
# (start, count): empty, one element, odd edges, element index crossing 2**32, block index crossing
# 2**32 (element 2**35), the top of the accepted range (2**62)
RANGES = [(0, 0), (0, 1), (5, 1), (3, 17), (0, 1000), (7, 40_001), (2**32 - 13, 29), (2**35 - 21, 50),
          (2**62 - 33, 33)]


def bits(x) -> np.ndarray:
    arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


@pytest.fixture
def kernel():
    """Run a test under a given kernel choice, then restore the default."""
    yield compiled.set_kernel
    compiled.set_kernel(None)
    regen.set_num_threads(None)


def both(spec: InitSpec, start: int, count: int, kernel, banks=BANKS) -> tuple[np.ndarray, np.ndarray]:
    kernel("numpy")
    a = generate_numpy(spec, 5, "layer.weight", start, count, banks)
    kernel("compiled")
    b = generate_numpy(spec, 5, "layer.weight", start, count, banks)
    return a, b


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.dist}-{s.p0}-{s.p1}")
@pytest.mark.parametrize("start,count", RANGES)
def test_compiled_equals_numpy(spec: InitSpec, start: int, count: int, kernel) -> None:
    a, b = both(spec, start, count, kernel)
    assert np.array_equal(bits(a), bits(b))


@pytest.mark.parametrize("case", VECTORS["values"], ids=lambda c: f"{c['name']}-{c['spec']['dist']}-{c['start']}")
def test_golden_vectors(case, kernel) -> None:
    kernel("compiled")
    spec = InitSpec.from_dict(case["spec"])
    got = generate_numpy(spec, case["seed"], case["name"], case["start"], len(case["values"]), case["banks"])
    assert [f"{b:08x}" for b in bits(got).tolist()] == case["values"]


@pytest.mark.parametrize("spec", SPECS[:8], ids=lambda s: f"{s.dist}-{s.p0}-{s.p1}")
def test_compiled_equals_reference(spec: InitSpec, kernel) -> None:
    kernel("compiled")
    for start, count in [(0, 300), (2**32 - 3, 11), (2**35 + 1, 9)]:
        got = generate_numpy(spec, 9, "x", start, count)
        want = ref.values(spec, 9, "x", start, count)
        assert np.array_equal(bits(got), bits(want.astype(np.float32)))


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_thread_count_does_not_change_bits(threads: int, kernel, monkeypatch) -> None:
    monkeypatch.setattr(regen, "PIECE_MIN", 1000)  # split even these small ranges
    kernel("compiled")
    regen.set_num_threads(1)
    expect = [generate_numpy(s, 3, "w", 3, 12_345, BANKS) for s in SPECS]
    dct1 = generate(InitSpec("dct"), 3, "w", (70, 30, 3, 3)).numpy()
    regen.set_num_threads(threads)
    for s, want in zip(SPECS, expect):
        assert np.array_equal(bits(generate_numpy(s, 3, "w", 3, 12_345, BANKS)), bits(want))
    assert np.array_equal(bits(generate(InitSpec("dct"), 3, "w", (70, 30, 3, 3))), bits(dct1))
    pieces = regen.split_range(3, 12_345, 8)
    assert len(pieces) == threads and all(a % 8 == 0 for a, _ in pieces[1:])


@pytest.mark.parametrize("counter", [0, 5, 2**32 - 3, 2**62 - 4, 2**64 - 8])
def test_philox_blocks_equal_numpy(counter: int) -> None:
    """Counters crossing 2**32, up to the last block below 2**64 (numpy's Philox is the oracle)."""
    key = stream_key(77, 2, "mask.name")
    out = np.empty(4 * 8, dtype=np.uint64)
    kc.philox_blocks(np.uint64(key[0]), np.uint64(key[1]), np.uint64(counter), out)
    assert np.array_equal(out, philox_numpy(key, counter, 8))
    assert [int(x) for x in out[:4]] == list(ref.philox_block(key, (counter, 0, 0, 0)))


def test_philox_known_answers() -> None:
    for v in VECTORS["philox4x64_10_kat"]:
        c = [np.uint64(int(x, 16)) for x in v["counter"]]
        k = [np.uint64(int(x, 16)) for x in v["key"]]
        assert [f"{int(x):016x}" for x in kc.philox_counter(k[0], k[1], *c)] == [o.lower().zfill(16) for o in v["out"]]


def _all_angles_and_radii(start: int, size: int) -> np.ndarray:
    k = np.arange(start, start + size, dtype=np.uint64)
    # w0 (radius) and w1 (angle) both run over the 24-bit values, with junk in the ignored low bits
    w0 = (k << np.uint64(8)) | np.uint64(0x5A)
    w1 = (((k * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFF)) << np.uint64(8)) | np.uint64(0xC3)
    return w0 | (w1 << np.uint64(32))


def test_every_angle_and_radius_equals_numpy() -> None:
    """All 2**24 radius inputs and all 2**24 angle inputs (the numpy kernel is checked exhaustively
    against the spec's literal sequence by test_generator_values): no FMA contraction, no fast-math."""
    for start in range(0, 1 << 24, 1 << 22):
        raw = _all_angles_and_radii(start, 1 << 22)
        for mean, std in ((0.0, 1.0), (0.25, 0.0589)):
            want = np.empty(2 * raw.size, dtype=np.float32)
            kn.normal(raw, want, mean, std)
            got = np.empty_like(want)
            kc.normal_raw(raw, np.float32(mean), np.float32(std), got)
            assert np.array_equal(bits(got), bits(want))


@pytest.mark.parametrize("case", VECTORS["dct"], ids=lambda c: "x".join(map(str, c["shape"])))
def test_dct_vectors(case, kernel) -> None:
    kernel("compiled")
    full = generate(InitSpec("dct"), 0, "w", tuple(case["shape"])).numpy()
    assert hashlib.sha256(full.astype("<f4").tobytes()).hexdigest() == case["sha256"]
    assert [f"{b:08x}" for b in bits(full.reshape(-1)[case["start"] : case["start"] + 8]).tolist()] == case["values"]


@pytest.mark.parametrize("shape", [(1, 1), (10, 12), (12, 10), (64, 3, 7, 7), (512, 512, 3, 3), (1000, 784), (3, 4096), (5, 0)])
def test_dct_equals_numpy(shape, kernel) -> None:
    n = int(np.prod(shape))
    for start, count in [(0, n), (n // 3, n - n // 3), (n // 2, min(7, n - n // 2))]:
        kernel("numpy")
        a = generate_numpy(InitSpec("dct"), 0, "w", start, count, shape=shape)
        kernel("compiled")
        b = generate_numpy(InitSpec("dct"), 0, "w", start, count, shape=shape)
        assert np.array_equal(bits(a), bits(b))


def test_masks_equal_numpy(kernel) -> None:
    for case in VECTORS["masks"]:
        kernel("compiled")
        m = random_mask(case["seed"], case["name"], (case["n"],), case["k"])
        assert np.flatnonzero(m.numpy()).tolist() == case["indices"]
    for case in VECTORS["row_masks"]:
        m = random_mask_rows(case["seed"], case["name"], tuple(case["shape"]), case["k"])
        assert np.flatnonzero(m.numpy().reshape(-1)).tolist() == case["indices"]
    for shape, k in (((300, 200), 600), ((64, 32, 3, 3), 1000), ((7,), 3)):
        kernel("numpy")
        a, ar = random_mask(4, "w", shape, k), random_mask_rows(4, "w", shape, k)
        kernel("compiled")
        assert torch.equal(a, random_mask(4, "w", shape, k)) and torch.equal(ar, random_mask_rows(4, "w", shape, k))


def test_kernel_choice(kernel, monkeypatch) -> None:
    kernel("numpy")
    assert compiled.active() == "numpy" and compiled.compiled_for(10**6) is None
    kernel("compiled")
    assert compiled.active() == "compiled" and compiled.compiled_for(1) is kc
    kernel("auto")  # numba is loaded now: auto uses it for large ranges
    assert compiled.compiled_for(compiled.AUTO_MIN_ELEMENTS - 1) is None
    assert compiled.compiled_for(compiled.AUTO_MIN_ELEMENTS) is kc
    with pytest.raises(FzpackError, match="unknown generator kernel"):
        kernel("fast")
    monkeypatch.setenv("FZPACK_KERNEL", "gpu")
    kernel(None)
    with pytest.raises(FzpackError, match="FZPACK_KERNEL"):
        compiled.get_kernel()
    monkeypatch.setenv("FZPACK_KERNEL", "numpy")
    assert compiled.active() == "numpy"


def test_auto_imports_numba_once_the_work_pays_for_it(kernel, monkeypatch) -> None:
    """auto stays on numpy until AUTO_IMPORT_ELEMENTS values were asked for (or a job that large is
    announced), then loads the compiled kernels."""
    kernel("auto")
    step = compiled.AUTO_MIN_ELEMENTS
    monkeypatch.setattr(compiled, "AUTO_IMPORT_ELEMENTS", 3 * step)
    monkeypatch.setattr(compiled, "_module", None)
    monkeypatch.setattr(compiled, "_work", 0)
    assert compiled.compiled_for(step - 1) is None and compiled._work == 0  # small ranges do not count
    assert compiled.compiled_for(step) is None and compiled.compiled_for(step) is None
    assert compiled.active() == "numpy" and compiled._work == 2 * step  # asking does not count
    assert compiled.compiled_for(step) is kc
    monkeypatch.setattr(compiled, "_module", None)
    monkeypatch.setattr(compiled, "_work", 0)
    compiled.expect(3 * step - 1)
    assert compiled._module is None and compiled._work == 0
    compiled.expect(3 * step)
    assert compiled._module is kc and compiled.compiled_for(step) is kc


def test_one_shot_small_restore_does_not_import_numba(tmp_path) -> None:
    """The default (auto) restores a small file without numba's import (~0.7 s, ~120 MB)."""
    import subprocess
    import sys

    import fzpack
    from fzpack.models.registry import create_model

    model = create_model("lenet5-caffe")
    fzpack.freeze_(model, fzpack.FreezeNetConfig(rate=0.99, seed=3),
                   batch=(torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10))
    fzpack.compress(fzpack.save(model, tmp_path / "m.pt"), tmp_path / "m.fzp")
    code = ("import sys, fzpack; fzpack.restore(sys.argv[1]); "
            "assert 'numba' not in sys.modules, 'numba imported'; print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "FZPACK_KERNEL"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.fzp")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_fallback_without_numba(kernel, monkeypatch) -> None:
    """Where numba is missing, auto falls back to numpy with the same bits; an explicit "compiled" is an error."""
    kernel("compiled")
    want = generate_numpy(SPECS[1], 1, "w", 0, 50_000)
    monkeypatch.setattr(compiled, "_module", None)
    monkeypatch.setattr(compiled, "_import_error", "ModuleNotFoundError: No module named 'numba'")
    kernel("auto")
    assert compiled.active() == "numpy" and compiled.unavailable_reason()
    assert np.array_equal(bits(generate_numpy(SPECS[1], 1, "w", 0, 50_000)), bits(want))
    kernel("compiled")
    with pytest.raises(FzpackError, match="install numba"):
        generate_numpy(SPECS[1], 1, "w", 0, 50_000)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 assembly")
def test_no_fused_multiply_add_in_the_machine_code() -> None:
    """LLVM must not contract a * b + c into an FMA (spec section 10): none in the generated code."""
    from numba import njit

    args = {
        "normal_halves": (np.zeros(4, np.uint32), np.zeros(4, np.uint32), np.float32(0.5), np.float32(2.0), np.empty(8, np.float32)),
        "uniform_halves": (np.zeros(4, np.uint32), np.zeros(4, np.uint32), np.float32(0.5), np.float32(2.0), True,
                           np.empty(8, np.float32)),
        "dct_fill": (0, 8, 4, 1, 4, 4, 0.3, 0.5, 0.7, np.empty(8, np.float32)),
    }
    for name, a in args.items():
        fresh = njit(nogil=True, fastmath=False, error_model="numpy")(getattr(kc, name).py_func)  # uncached: inspectable
        fresh(*a)
        asm = "\n".join(fresh.inspect_asm().values())
        assert "sqrt" in asm or name != "normal_halves"
        assert not re.search(r"\bv?f(n)?m(add|sub)\d", asm), name


SUBPROCESS_CHECK = r"""
import hashlib, numpy as np, torch
from fzpack.generator import InitSpec, compiled, generate
specs = [InitSpec("normal", 0.0, 0.05), InitSpec("normal", 0.3, 1.5), InitSpec("uniform", -0.2, 0.1), InitSpec("pm", 0.07), InitSpec("dct")]
out = []
for backend, kernel in (("numpy", "compiled"), ("numpy", "numpy"), ("torch", "numpy")):
    compiled.set_kernel(kernel)
    h = hashlib.sha256()
    for s in specs:
        h.update(generate(s, 11, "a.weight", (300, 64, 3, 3), backend=backend).numpy().tobytes())
    out.append(h.hexdigest())
print(" ".join(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("env", [{"NUMBA_CPU_NAME": "generic"}, {"ATEN_CPU_CAPABILITY": "avx2"},
                                 {"ATEN_CPU_CAPABILITY": "default", "NUMBA_CPU_NAME": "generic"}],
                         ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_same_bits_on_other_cpu_targets(env) -> None:
    """Code generated for a generic x86-64 (no AVX) and torch's avx2 / default kernels give the same bits."""
    run_env = {**os.environ, **env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run([sys.executable, "-c", SUBPROCESS_CHECK], capture_output=True, text=True, env=run_env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    hashes = res.stdout.split()
    assert len(hashes) == 3 and len(set(hashes)) == 1, hashes


def _generate_in_child(n: int) -> bytes:
    return generate(SPECS[1], 3, "w", (n,)).numpy().tobytes()


def test_forked_child_generates_with_its_own_thread_pool(kernel) -> None:
    """The generator's thread pool is per process: a child forked after the parent split a range
    over it still generates (the parent's worker threads do not exist in the child)."""
    import multiprocessing as mp

    kernel("compiled")
    regen.set_num_threads(2)
    n = 4 * regen.PIECE_MIN
    want = _generate_in_child(n)  # the parent's pool exists now
    with mp.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_generate_in_child, (n,)).get(timeout=60) == want
