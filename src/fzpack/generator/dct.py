"""dist "dct": the orthonormal DCT-II matrix of a DCTpS layer, bit-identical on numpy and torch.

DCT-plus-Sparse layers (W = alpha * D + S) use a fixed matrix D that is regenerated, never stored:
D[o, p] = s_o * cos(pi * (2p + 1) * o / (2N)), N = max(out, patch_dim), with the conv patch flattened
height-width-channel, channel fastest (the DCTpS reference code's layout). Spec: section 6.7 of
formats/generator-v1.md.

libm cosines are not correctly rounded and differ between CPU libraries and CUDA, so the cosine is
built from parts that are exact or IEEE-specified everywhere: an exact integer reduction of the
angle pi * m / (2N) to x = pi * j / (2N) in [0, pi/4], then fixed binary64 polynomials evaluated
with +, -, * only, in the written order, then one rounding to float32. Each numpy ufunc and each
torch op is one correctly rounded binary64 operation (a separate kernel, so nothing can be fused
into an FMA; torch's add is `a + 1 * b` even where it uses an FMA instruction, which is exact), and
every scalar is an exact float64 constant computed once per tensor in Python. There is no division
on the device: the one quotient, pi / (2N), is a host constant.

The same arithmetic, written once in `_values`, runs on numpy arrays and on torch tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fzpack.errors import FzpackError
from fzpack.generator import constants as K
from fzpack.generator.schemes import check_shape

#: Elements per chunk: bounds the ~20 int64/float64 temporaries (numpy: 0.5 MB each, L2-sized;
#: torch: 8 MB each).
NUMPY_CHUNK = 1 << 16
TORCH_CHUNK = 1 << 20


@dataclass(frozen=True)
class DctLayout:
    """Where element i of a dct tensor sits in the DCT matrix (spec 6.7).

    Args:
        out: shape[0], the matrix row (frequency) count.
        c_in: shape[1].
        spatial: prod(shape[2:]) (1 for a Linear weight).
        n: N = max(out, c_in * spatial), the DCT size.
    """

    out: int
    c_in: int
    spatial: int
    n: int

    @property
    def patch(self) -> int:
        """patch_dim = c_in * prod(kernel): the matrix column count."""
        return self.c_in * self.spatial

    @property
    def numel(self) -> int:
        """Number of elements of the tensor."""
        return self.out * self.patch


def dct_layout(shape: Sequence[int]) -> DctLayout:
    """The DCT geometry of a weight of `shape` (out, c_in, *kernel); FzpackError if it has none.

    Args:
        shape: the weight's shape, at least 2 dimensions, N = max(out, patch_dim) <= 2**30.

    Returns:
        The DctLayout.

    Example:
        >>> dct_layout((8, 3, 3, 3))
        DctLayout(out=8, c_in=3, spatial=9, n=27)
    """
    dims = check_shape(shape)
    if len(dims) < 2:
        raise FzpackError(f"dct needs a weight of at least 2 dimensions, got shape {dims}")
    spatial = math.prod(dims[2:])
    n = max(dims[0], dims[1] * spatial)
    if n > K.DCT_MAX_N:
        raise FzpackError(f"dct size N = max(out, patch_dim) = {n} exceeds 2**30 (shape {dims})")
    return DctLayout(dims[0], dims[1], spatial, n)


def dct_constants(n: int) -> tuple[float, float, float]:
    """The per-tensor binary64 constants of spec 6.7.2, from correctly rounded IEEE operations.

    Python's float `/` and math.sqrt are IEEE binary64 operations, identical on every platform, so
    these host constants can be handed to any device (no division happens there).

    Args:
        n: the DCT size N, 1 <= n <= 2**30.

    Returns:
        (CN, SK0, SK1) = (PI64 / float64(2n), sqrt(1.0 / float64(n)), sqrt(2.0 / float64(n))).

    Example:
        >>> dct_constants(4)[1:]
        (0.5, 0.7071067811865476)
    """
    nf = float(n)  # exact: n <= 2**30
    return K.PI64 / (2.0 * nf), math.sqrt(1.0 / nf), math.sqrt(2.0 / nf)


class _Ops:
    """The few array operations `_values` needs that differ between numpy and torch."""

    def __init__(self, where: Callable[..., Any], floordiv: Callable[[Any, int], Any],
                 to_f64: Callable[[Any], Any], to_f32: Callable[[Any], Any]) -> None:
        self.where, self.floordiv, self.to_f64, self.to_f32 = where, floordiv, to_f64, to_f32


_NUMPY = _Ops(np.where, lambda a, b: a // b, lambda a: a.astype(np.float64), lambda a: a.astype(np.float32))
_TORCH = _Ops(
    torch.where,
    lambda a, b: torch.div(a, b, rounding_mode="floor"),  # integer division: exact on every device
    lambda a: a.to(torch.float64),
    lambda a: a.to(torch.float32),
)


def sin_poly(x: Any, z: Any) -> Any:
    """sin(x) by spec 6.7.3's polynomial, one binary64 rounding per operation in the written order.

    Args:
        x: binary64 argument(s) in [0, pi/4]: a float, numpy array or torch float64 tensor.
        z: x * x, already rounded.

    Returns:
        sin(x) (within a few binary64 ulps), of the same kind as x.

    Example:
        >>> sin_poly(0.0, 0.0)
        0.0
    """
    return x + _odd_even_tail(z, K.DCT_SIN) * x


def cos_poly(z: Any) -> Any:
    """cos(x) by spec 6.7.3's polynomial, from z = x * x alone, in the written order.

    Args:
        z: x * x for binary64 x in [0, pi/4]: a float, numpy array or torch float64 tensor.

    Returns:
        cos(x) (within a few binary64 ulps), of the same kind as z.

    Example:
        >>> cos_poly(0.0)
        1.0
    """
    q = _odd_even_tail(z, K.DCT_COS) + -0.5
    q = q * z
    return q + 1.0


def _odd_even_tail(z: Any, coeffs: tuple[float, ...]) -> Any:
    """``((((c6 z + c5) z + c4) z + c3) z + c2) z + c1) z`` in exactly that order (spec 6.7.3).

    The shared Horner core of sin and cos: one multiply or add per step, never fused.
    """
    c1, c2, c3, c4, c5, c6 = coeffs
    p = z * c6
    for c in (c5, c4, c3, c2, c1):
        p = p + c
        p = p * z
    return p


def _values(i: Any, lay: DctLayout, ops: _Ops) -> Any:
    """float32 values of the flat element indices `i` (int64 array or tensor), spec 6.7 step by step."""
    n_ = lay.n
    cn, sk0, sk1 = dct_constants(n_)
    # coordinates: row k = o, column n = spatial * c_in + c (channel fastest)
    k = ops.floordiv(i, lay.patch)
    rem = i - k * lay.patch
    c = ops.floordiv(rem, lay.spatial)
    s = rem - c * lay.spatial
    col = s * lay.c_in + c
    # exact reduction of the angle pi * m / (2N): (2n+1) * k < 2 N**2 <= 2**61, no int64 overflow
    m = ((2 * col + 1) * k) % (4 * n_)
    m = ops.where(m > 2 * n_, 4 * n_ - m, m)  # cos is even and 2 pi periodic
    neg = m > n_
    m = ops.where(neg, 2 * n_ - m, m)  # cos(pi - a) = -cos(a); now the angle is in [0, pi/2]
    use_sin = 2 * m > n_
    j = ops.where(use_sin, n_ - m, m)  # cos(pi/2 - a) = sin(a); now x = pi * j / (2N) <= pi/4
    x = ops.to_f64(j) * cn  # j <= N/2 < 2**53: exact conversion
    z = x * x
    y = ops.where(use_sin, sin_poly(x, z), cos_poly(z))
    # scale by s_k (both products are formed; scalars keep everything float64 on both backends)
    t = ops.where(k == 0, y * sk0, y * sk1)
    t = ops.where(neg, -t, t)  # exact; y = +0 only with neg false (m = N), so zeros stay +0
    return ops.to_f32(t)


def dct_numpy(shape: Sequence[int], start: int, count: int) -> np.ndarray:
    """Elements [start, start + count) of the flattened dct tensor of `shape`, float32, on the CPU.

    Args:
        shape: the full weight shape (out, c_in, *kernel).
        start: first flat element index.
        count: number of elements; start + count <= prod(shape).

    Returns:
        float32 array of length `count`.

    Example:
        >>> float(dct_numpy((4, 4), 0, 1)[0])
        0.5
    """
    lay = dct_layout(shape)
    _check_slice(lay, start, count)
    out = np.empty(count, dtype=np.float32)
    for a in range(0, count, NUMPY_CHUNK):
        b = min(a + NUMPY_CHUNK, count)
        out[a:b] = _values(np.arange(start + a, start + b, dtype=np.int64), lay, _NUMPY)
    return out


def dct_torch(shape: Sequence[int], start: int, count: int, device: torch.device) -> torch.Tensor:
    """Elements [start, start + count) of the dct tensor computed with torch ops on `device`.

    Bit-identical to `dct_numpy`. Devices without binary64 arithmetic (Apple MPS) compute on the
    CPU and copy.

    Args:
        shape: the full weight shape (out, c_in, *kernel).
        start: first flat element index.
        count: number of elements; start + count <= prod(shape).
        device: where the values are computed and returned.

    Returns:
        float32 tensor of length `count` on `device`.

    Example:
        >>> dct_torch((4, 4), 0, 1, torch.device("cpu")).item()
        0.5
    """
    lay = dct_layout(shape)
    _check_slice(lay, start, count)
    work = torch.device("cpu") if device.type == "mps" else device
    parts = [
        _values(torch.arange(start + a, start + min(a + TORCH_CHUNK, count), dtype=torch.int64, device=work),
                lay, _TORCH)
        for a in range(0, count, TORCH_CHUNK)
    ]
    if not parts:
        return torch.empty(0, dtype=torch.float32, device=device)
    values = parts[0] if len(parts) == 1 else torch.cat(parts)
    return values.to(device)


def _check_slice(lay: DctLayout, start: int, count: int) -> None:
    if start < 0 or count < 0 or start + count > lay.numel:
        raise FzpackError(f"element range [{start}, {start + count}) is outside the dct tensor's {lay.numel}")
