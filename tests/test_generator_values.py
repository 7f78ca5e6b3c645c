"""Values of generator v1: golden vectors, numpy/torch/reference agreement, slicing, statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fzpack.errors import FzpackError
from fzpack.generator import INIT, InitSpec, generate, generate_numpy, set_num_threads, stream_key
from fzpack.generator import kernels_numpy as kn
from fzpack.generator import reference as ref
from fzpack.generator import regen as gen_module
from fzpack.generator.philox import philox_numpy

VECTORS = json.loads((Path(__file__).parents[1] / "formats/vectors/generator.json").read_text(encoding="utf-8"))

SPECS = [
    InitSpec("normal", 0.0, 0.05),
    InitSpec("normal", 0.3, 1.5),
    InitSpec("uniform", -0.2, 0.1),
    InitSpec("uniform", 0.0, 1.0),
    InitSpec("uniform", 1e-35, 3e-35),  # width below 2**-102: the unfolded multiply
    InitSpec("pm", 0.07),
    InitSpec("zeros"),
    InitSpec("bank", 0.125, bank="shared", offset=11),
]
BANKS = {"shared": 1000}


def bits(x: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = x.numpy() if isinstance(x, torch.Tensor) else x
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


def vector_cases():
    for case in VECTORS["values"]:
        yield pytest.param(case, id=f"{case['name']}-{case['spec']['dist']}-{case['start']}")


@pytest.mark.parametrize("case", list(vector_cases()))
def test_golden_vectors(case) -> None:
    spec = InitSpec.from_dict(case["spec"])
    expected = [int(h, 16) for h in case["values"]]
    got = generate_numpy(spec, case["seed"], case["name"], case["start"], len(expected), case["banks"])
    assert bits(got).tolist() == expected
    if case["start"] == 0:
        t = generate(spec, case["seed"], case["name"], (len(expected),), banks=case["banks"], backend="torch")
        assert bits(t).tolist() == expected


@pytest.mark.parametrize("case", list(vector_cases())[:8])
def test_golden_vectors_reference(case) -> None:
    spec = InitSpec.from_dict(case["spec"])
    got = ref.values(spec, case["seed"], case["name"], case["start"], 8, case["banks"])
    assert bits(got).tolist() == [int(h, 16) for h in case["values"]]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.dist}-{s.p0}")
def test_numpy_torch_reference_agree(spec: InitSpec) -> None:
    shape = (13, 7, 3, 3)  # 819 elements: not a multiple of 8, odd (a lone normal element at the end)
    a = generate(spec, 11, "layer.weight", shape, banks=BANKS)
    b = generate(spec, 11, "layer.weight", shape, banks=BANKS, backend="torch")
    assert a.shape == b.shape == shape and a.dtype == b.dtype == torch.float32
    assert np.array_equal(bits(a.reshape(-1)), bits(b.reshape(-1)))
    r = ref.values(spec, 11, "layer.weight", 0, math.prod(shape), BANKS)
    assert np.array_equal(bits(a.reshape(-1)), bits(r))


spec_strategy = st.one_of(
    st.builds(lambda m, s: InitSpec("normal", m, s), st.floats(-2, 2), st.floats(0, 3)),
    st.builds(lambda a, w: InitSpec("uniform", a, a + w), st.floats(-3, 3), st.floats(0, 4)),
    st.builds(lambda s: InitSpec("pm", s), st.floats(0, 2)),
    st.builds(
        lambda sc, off: InitSpec("bank", sc, bank="b", offset=off), st.floats(-1, 1), st.integers(0, 10**6)
    ),
    st.just(InitSpec("zeros")),
)
shape_strategy = st.lists(st.integers(0, 9), min_size=1, max_size=4)
names = st.text(min_size=0, max_size=12)
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=40, deadline=None)
@given(spec=spec_strategy, seed=seeds, name=names, shape=shape_strategy, bank_len=st.integers(1, 300))
def test_numpy_equals_torch_random(spec, seed, name, shape, bank_len) -> None:
    banks = {"b": bank_len}
    a = generate(spec, seed, name, shape, banks=banks)
    b = generate(spec, seed, name, shape, banks=banks, backend="torch")
    assert np.array_equal(bits(a.reshape(-1)), bits(b.reshape(-1)))


@settings(max_examples=40, deadline=None)
@given(
    spec=spec_strategy,
    seed=seeds,
    name=names,
    start=st.integers(0, 5000),
    count=st.integers(0, 700),
    bank_len=st.integers(1, 300),
)
def test_slice_consistency_random(spec, seed, name, start, count, bank_len) -> None:
    banks = {"b": bank_len}
    full = generate_numpy(spec, seed, name, 0, start + count, banks)
    part = generate_numpy(spec, seed, name, start, count, banks)
    assert np.array_equal(bits(part), bits(full[start:]))


@settings(max_examples=30, deadline=None)
@given(spec=spec_strategy, seed=seeds, name=names, start=st.integers(0, 2**40), count=st.integers(0, 300))
def test_numpy_equals_torch_on_slices(spec, seed, name, start, count) -> None:
    if spec.dist in ("zeros", "bank"):
        return  # no stream slice of their own (bank slices are covered through generate above)
    key = stream_key(seed, INIT, name)
    a = generate_numpy(spec, seed, name, start, count)
    b = gen_module._torch_range(spec, key, start, count, torch.device("cpu"))
    assert np.array_equal(bits(a), bits(b))


def test_slices_across_chunks(monkeypatch) -> None:
    # tiny chunks force partial first/last blocks and many chunks, with and without threads
    spec = InitSpec("normal", 0.1, 0.2)
    full = generate_numpy(spec, 3, "w", 0, 5000)
    monkeypatch.setattr(gen_module, "CHUNK_BLOCKS", 3)
    for threads in (1, 3):
        set_num_threads(threads)
        try:
            for start, count in [(0, 5000), (1, 4998), (17, 333), (4999, 1), (8, 16)]:
                got = generate_numpy(spec, 3, "w", start, count)
                assert np.array_equal(bits(got), bits(full[start : start + count]))
        finally:
            set_num_threads(1)


def test_large_start_uses_right_blocks() -> None:
    spec = InitSpec("uniform", -1.0, 1.0)
    start = 2**36 + 5
    got = generate_numpy(spec, 1, "w", start, 20)
    assert np.array_equal(bits(got), bits(ref.values(spec, 1, "w", start, 20)))


def test_bank_is_cyclic_and_shared() -> None:
    banks = {"bank": 50}
    a = generate_numpy(InitSpec("bank", 1.0, bank="bank"), 4, "a", 0, 170, banks)
    b = generate_numpy(InitSpec("bank", 0.5, bank="bank", offset=60), 4, "other", 0, 30, banks)
    assert np.array_equal(a[:50], a[50:100]) and np.array_equal(a[:20], a[150:170])
    assert np.array_equal(b, a[10:40] * np.float32(0.5))  # offset 60 = 10 mod 50; name is irrelevant
    bank = generate_numpy(InitSpec("uniform", -1.0, 1.0), 0, "unused", 0, 1)  # only the BANK stream matters
    assert bank.dtype == np.float32
    assert a.min() >= -1.0 and a.max() < 1.0


def test_bank_needs_length() -> None:
    spec = InitSpec("bank", 1.0, bank="missing")
    with pytest.raises(FzpackError):
        generate_numpy(spec, 0, "w", 0, 4)
    with pytest.raises(FzpackError):
        generate_numpy(spec, 0, "w", 0, 4, {"missing": 0})


def test_streams_differ_by_name_and_seed() -> None:
    spec = InitSpec("normal", 0.0, 1.0)
    a = generate_numpy(spec, 1, "a", 0, 64)
    assert not np.array_equal(a, generate_numpy(spec, 1, "b", 0, 64))
    assert not np.array_equal(a, generate_numpy(spec, 2, "a", 0, 64))
    assert np.array_equal(a, generate_numpy(spec, 1, "a", 0, 64))


def test_normal_statistics() -> None:
    z = generate_numpy(InitSpec("normal", 0.0, 1.0), 2024, "stats", 0, 1_000_000).astype(np.float64)
    assert abs(z.mean()) < 5e-3  # 5 sigma of the mean is 5e-3
    assert abs(z.std() - 1.0) < 4e-3
    assert abs(np.mean(z**3)) < 0.02 and abs(np.mean(z**4) - 3.0) < 0.05
    assert np.abs(z).max() <= 5.7682  # tail truncation: sqrt(-2 ln 2**-24)
    # Kolmogorov-Smirnov distance to the standard normal CDF (critical value at 1e6: ~0.0016)
    zs = np.sort(z)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(zs[::50] / math.sqrt(2.0)))
    emp = np.arange(0, zs.size, 50) / zs.size
    assert np.abs(cdf - emp).max() < 2e-3
    v = generate_numpy(InitSpec("normal", 0.5, 0.01), 1, "s", 0, 200_001).astype(np.float64)
    assert abs(v.mean() - 0.5) < 1e-4 and abs(v.std() - 0.01) < 1e-4


def test_uniform_and_pm_statistics() -> None:
    u = generate_numpy(InitSpec("uniform", -0.5, 1.5), 3, "u", 0, 500_000).astype(np.float64)
    assert u.min() >= -0.5 and u.max() < 1.5
    assert abs(u.mean() - 0.5) < 4e-3 and abs(u.var() - 4 / 12) < 4e-3
    p = generate_numpy(InitSpec("pm", 0.25), 3, "p", 0, 100_000)
    assert set(np.unique(p).tolist()) == {-0.25, 0.25}
    assert abs(float((p > 0).mean()) - 0.5) < 0.01


def _words(count: int, stride: int) -> np.ndarray:
    # every `stride`-th 24-bit value, shifted into place, with junk in the low 8 bits that must be ignored
    k = np.arange(0, 1 << 24, stride, dtype=np.uint32)[:count]
    return (k << np.uint32(8)) | np.uint32(0xA5)


def test_ln_and_trig_accuracy_bound() -> None:
    """Measured over all 2**24 inputs (see the slow test): |ln err| <= 1.68 ulp, |cos/sin err| <= 9.9e-8."""
    w = _words(1 << 20, 16).astype(np.int64)
    k1 = (w >> 8) + 1
    ln = ref.log_u1(w)
    true_ln = np.log(k1.astype(np.float64)) - 24 * math.log(2.0)
    nz = true_ln != 0
    ulp = np.spacing(np.abs(true_ln[nz]).astype(np.float32)).astype(np.float64)
    assert (np.abs(ln[nz] - true_ln[nz]) / ulp).max() <= 1.7
    assert np.all(ln[~nz] == 0.0)
    cos, sin = ref.cos_sin(w)
    angle = 2 * math.pi * (w >> 8) / 2**24
    assert np.abs(cos - np.cos(angle)).max() <= 1e-7
    assert np.abs(sin - np.sin(angle)).max() <= 1e-7


def _check_fast_vs_reference(w: np.ndarray) -> None:
    v = kn.workspace(w.size).views(w.size)
    rs = kn.radius(w.copy(), 1.0, v).copy()
    expected_rs = ref.rn(np.sqrt(ref.rn(ref.log_u1(w.astype(np.int64)) * -2.0)))
    assert np.array_equal(bits(rs), bits(expected_rs.astype(np.float32)))
    cos, sin = (a.copy() for a in kn.cos_sin(w.copy(), v))
    rc, rsn = ref.cos_sin(w.astype(np.int64))
    assert np.array_equal(bits(cos), bits(rc.astype(np.float32)))
    assert np.array_equal(bits(sin), bits(rsn.astype(np.float32)))


def test_fast_path_rewrites_are_exact_sampled() -> None:
    # folded -2, signed-quadrant angle, bit-blend swaps == the spec's literal sequence
    _check_fast_vs_reference(_words(1 << 18, 61))
    edges = np.array([0, 1, 2**21 - 1, 2**21, 2**21 + 1, 2**22 - 1, 2**22, 2**22 + 1, 3 * 2**21, 2**23,
                      5 * 2**21, 3 * 2**22, 7 * 2**21, 2**24 - 1], dtype=np.uint32)
    _check_fast_vs_reference(np.concatenate([edges << np.uint32(8), (edges << np.uint32(8)) | np.uint32(255)]))


@pytest.mark.slow
def test_fast_path_rewrites_are_exact_exhaustive() -> None:
    for start in range(0, 1 << 24, 1 << 21):
        k = np.arange(start, start + (1 << 21), dtype=np.uint32)
        _check_fast_vs_reference((k << np.uint32(8)) | np.uint32(0x3C))


def test_odd_length_normal_uses_first_of_pair() -> None:
    spec = InitSpec("normal", 0.0, 1.0)
    five = generate_numpy(spec, 0, "w", 0, 5)
    six = generate_numpy(spec, 0, "w", 0, 6)
    assert np.array_equal(bits(five), bits(six[:5]))
    raw = philox_numpy((0, 0), 0, 1)
    pair = ref.normal_pairs(raw[:3], 0.0, 1.0)
    assert pair.size == 6


def test_mean_zero_keeps_negative_zero() -> None:
    # u1 = 1: ln = +0, -2 * ln = -0 and sqrt(-0) = -0 (IEEE), so angle 0 gives -0 * 1 = -0 and
    # -0 * +0 = -0. The spec omits `+ mean` for mean = +-0, so these stay -0 (+0 would turn them +0).
    r = np.array([0xFFFFFF00], dtype=np.uint64)
    out = np.empty(2, dtype=np.float32)
    kn.normal(r, out, 0.0, 1.0)
    assert bits(out).tolist() == [0x80000000, 0x80000000]
    assert bits(ref.normal_pairs(r, 0.0, 1.0).astype(np.float32)).tolist() == [0x80000000, 0x80000000]
    kn.normal(r, out, 0.5, 1.0)
    assert out.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_a_plain_cast(dtype) -> None:
    spec = InitSpec("normal", 0.0, 0.1)
    f32 = generate(spec, 0, "w", (10, 10))
    assert torch.equal(generate(spec, 0, "w", (10, 10), dtype=dtype), f32.to(dtype))


def test_empty_and_scalar_shapes() -> None:
    spec = InitSpec("uniform", 0.0, 1.0)
    assert generate(spec, 0, "w", (0, 5)).shape == (0, 5)
    assert generate(spec, 0, "w", (0, 5), backend="torch").shape == (0, 5)
    assert generate(spec, 0, "w", ()).shape == ()
    assert generate_numpy(spec, 0, "w", 10, 0).shape == (0,)


def test_global_rng_untouched() -> None:
    torch_state = torch.random.get_rng_state().clone()
    np_state = np.random.get_state()
    for spec in SPECS:
        generate(spec, 5, "w", (33, 9), banks=BANKS)
        generate(spec, 5, "w", (33, 9), banks=BANKS, backend="torch")
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spec": "normal"},
        {"shape": (-1, 3)},
        {"shape": "abc"},
        {"dtype": torch.int32},
        {"backend": "cupy"},
        {"seed": -5},
        {"device": "not-a-device"},
    ],
)
def test_generate_rejects_bad_arguments(kwargs) -> None:
    args = {"spec": InitSpec("normal", 0.0, 1.0), "seed": 0, "name": "w", "shape": (3, 3)} | kwargs
    spec, seed, name, shape = args.pop("spec"), args.pop("seed"), args.pop("name"), args.pop("shape")
    with pytest.raises(FzpackError):
        generate(spec, seed, name, shape, **args)


def test_generate_numpy_rejects_bad_range() -> None:
    with pytest.raises(FzpackError):
        generate_numpy(InitSpec("pm", 1.0), 0, "w", -1, 5)
    with pytest.raises(FzpackError):
        generate_numpy(InitSpec("pm", 1.0), 0, "w", 0, 2**62)
