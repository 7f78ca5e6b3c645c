"""dist "dct" (spec 6.7): the DCTpS matrix, bit-identical on numpy, torch and the literal reference."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fzpack.errors import CheckpointError, FzpackError
from fzpack.generator import InitSpec, generate, generate_numpy, init_spec
from fzpack.generator import constants as K
from fzpack.generator import dct as dct_module
from fzpack.generator import reference as ref
from fzpack.generator.dct import cos_poly, dct_layout, dct_numpy, dct_torch, sin_poly

VECTORS = json.loads((Path(__file__).parents[1] / "formats/vectors/generator.json").read_text(encoding="utf-8"))
DCT = InitSpec("dct")
CPU = torch.device("cpu")

# Linear and conv, out > patch_dim and out < patch_dim, odd and even N, N up to 4608 (200 x 512*3*3)
SHAPES = [(10, 12), (12, 10), (8, 3, 3, 3), (20, 16, 5, 5), (6, 6), (1, 1), (7, 1), (1, 9), (300, 784),
          (784, 300), (64, 3, 7, 7), (512, 256, 3, 3), (4096, 300), (200, 512, 3, 3), (10, 4, 2, 2, 2), (5, 3, 4)]


def bits(x: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = x.numpy() if isinstance(x, torch.Tensor) else x
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


def coords(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """(k, n, N) of every element: the spec's layout written out with numpy reshapes, not dct.py's."""
    lay = dct_layout(shape)
    out, c_in, kernel = shape[0], shape[1], shape[2:]
    # column index n of W[o, c, *kh] is (flat kernel position) * c_in + c
    n = (np.arange(lay.spatial)[None, :] * c_in + np.arange(c_in)[:, None]).reshape((c_in, *kernel))
    k = np.broadcast_to(np.arange(out).reshape((out,) + (1,) * (len(shape) - 1)), shape).reshape(-1)
    return k.astype(np.int64), np.broadcast_to(n, shape).reshape(-1).astype(np.int64), lay.n


def float64_dct(shape: tuple[int, ...], reduce: bool) -> tuple[np.ndarray, np.ndarray]:
    """s_k * cos(pi (2n+1) k / (2N)) with numpy's float64 cos; `reduce` takes the angle mod 2 pi exactly."""
    k, n, big_n = coords(shape)
    s = np.where(k == 0, math.sqrt(1.0 / big_n), math.sqrt(2.0 / big_n))
    m = (2 * n + 1) * k
    zero = m % (2 * big_n) == big_n  # cos(pi/2 + multiple of pi): exactly 0
    if reduce:
        m = m % (4 * big_n)
    return s * np.cos(np.pi * m / (2 * big_n)), zero


def ulps(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|values - exact| in units of the float32 ulp at `exact` (the ulp of its binade)."""
    ulp = np.ldexp(1.0, np.frexp(np.abs(exact))[1] - 24)
    return np.abs(values.astype(np.float64) - exact) / ulp


@pytest.mark.parametrize("case", VECTORS["dct"], ids=lambda c: "x".join(map(str, c["shape"])))
def test_golden_vectors(case) -> None:
    shape, start = tuple(case["shape"]), case["start"]
    expected = [int(h, 16) for h in case["values"]]
    assert bits(generate_numpy(DCT, 0, "any", start, 8, shape=shape)).tolist() == expected
    assert bits(dct_torch(shape, start, 8, CPU)).tolist() == expected
    assert bits(ref.dct_values(shape, start, 8)).tolist() == expected
    for backend in ("numpy", "torch"):
        full = generate(DCT, 0, "any", shape, backend=backend).numpy()
        assert hashlib.sha256(full.astype("<f4").tobytes()).hexdigest() == case["sha256"]


def test_zero_case_is_positive_zero() -> None:
    # N = 6, k = 2, n = 1: m = 3 * 2 = 6 = N, cos(pi/2) = 0; the reduction takes sin(0) = +0 exactly
    w = generate(DCT, 0, "w", (6, 6))
    assert bits(w[2, 1].reshape(1)).tolist() == [0]
    for shape in SHAPES[:12]:
        _, zero = float64_dct(shape, reduce=True)
        v = bits(generate(DCT, 0, "w", shape).reshape(-1))
        assert np.all(v[zero] == 0)  # +0.0, never -0.0
        assert np.all(v[~zero] & 0x7FFFFFFF != 0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_within_one_ulp_of_float64_cos(shape) -> None:
    v = generate(DCT, 0, "w", shape).numpy().reshape(-1)
    direct, zero = float64_dct(shape, reduce=False)
    reduced, _ = float64_dct(shape, reduce=True)
    # the brief's literal formula (its float64 angle is itself inexact for large (2n+1)k)
    assert ulps(v[~zero], direct[~zero]).max() < 1.0
    # against the exactly reduced angle the values are correctly rounded float32 (spec 11: <= 0.50000)
    assert ulps(v[~zero], reduced[~zero]).max() <= 0.5 + 1e-6


def test_matches_reference_code_layout() -> None:
    # DCTpS's modules.py: scipy.fftpack.dct(np.eye(N), norm='ortho')[:patch_dim, :out], rows -> filters
    fftpack = pytest.importorskip("scipy.fftpack")
    for shape in [(10, 12), (12, 10), (8, 3, 3, 3), (20, 16, 5, 5), (6, 2, 3, 2)]:
        lay = dct_layout(shape)
        mat = fftpack.dct(np.eye(lay.n), norm="ortho")[: lay.patch, : lay.out].T  # (out, patch)
        kernel = shape[2:]
        expected = mat.reshape((lay.out, *kernel, lay.c_in))  # patch flattened (h, w, channel fastest)
        expected = np.moveaxis(expected, -1, 1)  # -> (out, c_in, *kernel)
        got = generate(DCT, 0, "w", shape).numpy()
        assert np.abs(got - expected).max() < 1e-7


def test_square_matrix_is_orthonormal() -> None:
    w = generate(DCT, 0, "w", (300, 300), dtype=torch.float64).numpy()
    assert np.abs(w @ w.T - np.eye(300)).max() < 1e-6


def test_exhaustive_small_sizes_against_reference() -> None:
    # every (k, n) for N = 1..40, both orientations: every branch of the reduction, odd and even N
    for big_n in range(1, 41):
        for shape in ((big_n, 3), (2, big_n)) if big_n > 3 else ((big_n, big_n),):
            numel = math.prod(shape)
            expected = bits(ref.dct_values(shape, 0, numel))
            assert np.array_equal(bits(dct_numpy(shape, 0, numel)), expected), shape
            assert np.array_equal(bits(dct_torch(shape, 0, numel, CPU)), expected), shape


@pytest.mark.parametrize("shape", SHAPES[:10], ids=lambda s: "x".join(map(str, s)))
def test_numpy_torch_reference_agree(shape) -> None:
    a = generate(DCT, 1, "a", shape)
    b = generate(DCT, 1, "a", shape, backend="torch")
    assert a.shape == b.shape == shape and a.dtype == b.dtype == torch.float32
    assert np.array_equal(bits(a.reshape(-1)), bits(b.reshape(-1)))
    numel = math.prod(shape)
    idx = np.unique(np.linspace(0, numel - 1, 300).astype(np.int64))  # the slow oracle on a sample
    flat = bits(a.reshape(-1))
    assert all(bits(ref.dct_values(shape, int(i), 1))[0] == flat[i] for i in idx)


shape_st = st.lists(st.integers(1, 40), min_size=2, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(shape=shape_st, data=st.data())
def test_slices_equal_full_tensor(shape, data) -> None:
    numel = math.prod(shape)
    start = data.draw(st.integers(0, numel))
    count = data.draw(st.integers(0, numel - start))
    full = bits(generate(DCT, 0, "w", shape).reshape(-1))
    assert np.array_equal(bits(generate_numpy(DCT, 0, "w", start, count, shape=shape)), full[start : start + count])
    assert np.array_equal(bits(dct_torch(shape, start, count, CPU)), full[start : start + count])


def test_slices_across_chunks(monkeypatch) -> None:
    shape = (37, 5, 3, 3)
    full = bits(dct_numpy(shape, 0, math.prod(shape)))
    monkeypatch.setattr(dct_module, "NUMPY_CHUNK", 97)
    monkeypatch.setattr(dct_module, "TORCH_CHUNK", 101)
    assert np.array_equal(bits(dct_numpy(shape, 13, 1500)), full[13:1513])
    assert np.array_equal(bits(dct_torch(shape, 13, 1500, CPU)), full[13:1513])


def test_seed_and_name_do_not_enter() -> None:
    a = generate(DCT, 0, "a", (16, 4, 3, 3))
    assert torch.equal(a, generate(DCT, 2**32 - 1, "layer.weight", (16, 4, 3, 3)))
    with pytest.raises(FzpackError):  # still validated like every other dist
        generate(DCT, 2**32, "a", (4, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_a_plain_cast(dtype) -> None:
    f32 = generate(DCT, 0, "w", (20, 30))
    assert torch.equal(generate(DCT, 0, "w", (20, 30), dtype=dtype), f32.to(dtype))
    assert torch.equal(generate(DCT, 0, "w", (20, 30), dtype=dtype, backend="torch"), f32.to(dtype))


def test_empty_shapes() -> None:
    for shape in [(0, 5), (5, 0), (0, 0), (3, 0, 3, 3)]:
        for backend in ("numpy", "torch"):
            assert generate(DCT, 0, "w", shape, backend=backend).shape == shape
    assert generate_numpy(DCT, 0, "w", 4, 0, shape=(2, 2)).shape == (0,)


def test_errors() -> None:
    for shape in [(5,), ()]:
        for backend in ("numpy", "torch"):
            with pytest.raises(FzpackError, match="at least 2 dimensions"):
                generate(DCT, 0, "w", shape, backend=backend)
    with pytest.raises(FzpackError, match="shape="):
        generate_numpy(DCT, 0, "w", 0, 4)
    with pytest.raises(FzpackError, match="outside"):
        generate_numpy(DCT, 0, "w", 2, 3, shape=(2, 2))
    with pytest.raises(FzpackError, match="outside"):  # a given shape bounds every dist's slice
        generate_numpy(InitSpec("pm", 1.0), 0, "w", 2, 3, shape=(2, 2))
    with pytest.raises(FzpackError, match="2\\*\\*30"):
        generate_numpy(DCT, 0, "w", 0, 1, shape=(1, 2**30 + 1))
    for bad in [{"p0": 1.0}, {"p1": 0.5}, {"bank": "b"}, {"offset": 3}]:
        with pytest.raises(FzpackError):
            InitSpec("dct", **bad)


def test_spec_dict_and_scheme() -> None:
    assert InitSpec.from_dict(DCT.to_dict()) == DCT
    assert DCT.to_dict() == {"dist": "dct", "p0": 0.0, "p1": 0.0, "bank": "", "offset": 0}
    with pytest.raises(CheckpointError):
        InitSpec.from_dict({"dist": "dct", "p0": 0.5})
    assert init_spec("dct", (64, 3, 3, 3)) == DCT
    with pytest.raises(FzpackError):
        init_spec("dct", (64,))


def test_constants_are_their_formulas() -> None:
    assert K.PI64 == math.pi and K.f64_bits(K.PI64) == 0x400921FB54442D18
    # minimax, not Taylor: the top coefficients deviate by up to 1 %
    for i, c in enumerate(K.DCT_SIN, start=1):  # ~ (-1)^i / (2i+1)!
        assert abs(c * math.factorial(2 * i + 1) * (-1) ** i - 1) < 2e-2
    for i, c in enumerate(K.DCT_COS, start=2):  # ~ (-1)^i / (2i)!
        assert abs(c * math.factorial(2 * i) * (-1) ** i - 1) < 2e-2


def test_polynomials_are_accurate() -> None:
    # on [0, pi/4] both are within a few binary64 ulps of libm: far below a float32 ulp (2**-24)
    x = np.linspace(0.0, math.pi / 4, 200_001)
    z = x * x
    assert np.abs(sin_poly(x, z) - np.sin(x)).max() < 2**-51
    assert np.abs(cos_poly(z) - np.cos(x)).max() < 2**-51
    assert sin_poly(0.0, 0.0) == 0.0 and math.copysign(1.0, sin_poly(0.0, 0.0)) == 1.0
    assert cos_poly(0.0) == 1.0


def test_spec_document_matches_code_and_vectors() -> None:
    # the spec is normative: its constant table and section 12 rows must be the code's and generator.json's
    spec = (Path(__file__).parents[1] / "formats/generator-v1.md").read_text(encoding="utf-8")
    for name, (pattern, _) in K.DCT_BITS.items():
        assert f"| {name} | `{pattern:016X}` |" in spec
    for case in VECTORS["dct"]:
        assert f"| {case['start']} | `{' '.join(case['values'])}` | `{case['sha256']}` |" in spec
    for case in VECTORS["row_masks"]:
        assert f"| {case['k']} | {case['indices']} |" in spec
