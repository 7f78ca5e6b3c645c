"""float32 distribution kernels on numpy: raw Philox words -> values (the CPU fast path).

Each kernel turns whole Philox blocks (4 * nb uint64 words) into 8 * nb float32 values. The
results are bit-identical to the literal spec sequence (`reference.py`, formats/generator-v1.md);
the rewrites used here for speed are exact, and each is named where it is used:

* ln: the final `* -2` is folded into the constants (scaling by -2 commutes with every rounding);
  k is taken from float32(k1) instead of u1 = k1 * 2**-24 (same mantissa, exponent + 24).
* angle: signed-quadrant reduction q = ((k2 + 2**21) >> 22) mod 4, r = k2 - 2**22 * q (mod 2**24)
  in [-2**21, 2**21) instead of the spec's reflected octants: the polynomials are odd/even in
  theta and round-to-nearest is symmetric, so both give the same bits (checked over all 2**24
  angles). q, the swap mask and both sign bits come straight from w1 with wrapping uint32 adds.
* sign flips and swaps are bit operations (-x is x with bit 31 flipped; -a * b == -(a * b)).
* uniform folds 2**-24 into the width when that is exact, and skips `+ low` for low = +-0.

Speed: every step is a ufunc writing in place into per-thread scratch buffers sized for one chunk
(L2-resident); constants are 0-d arrays (cheaper to pass than numpy scalars); the per-call
overhead of ~60 ufunc calls is amortized over 16 K pairs.
"""

from __future__ import annotations

import threading

import numpy as np

from fzpack.generator import constants as K

_LOCAL = threading.local()


def _c(value: float | int, dtype: type) -> np.ndarray:
    return np.array(value, dtype=dtype)


_F32, _U32, _I32 = np.float32, np.uint32, np.int32
# ln constants with the -2 folded in: x = -2 ln(u1) = kf*(-2 LN2) + (s*(-4) + s*z*(-2 R(z)))
_NEG2_LN2 = _c(-2.0 * K.LN2, _F32)
_NEG2_L1, _NEG2_L2, _NEG2_L3 = _c(-2.0 * K.L1, _F32), _c(-2.0 * K.L2, _F32), _c(-2.0 * K.L3, _F32)
_NEG4 = _c(-4.0, _F32)
_ONE_F = _c(1.0, _F32)
_ONE_U = _c(1, _U32)
_SHIFT8 = _c(8, _U32)
_SHIFT32 = _c(32, np.uint64)
_LOG_SHIFT = _c(K.LOG_BIAS_SHIFT, _I32)
_LOG_MASK = _c(K.LOG_MANT_MASK, _I32)
_LOG_BASE = _c(K.LOG_M_BASE, _I32)
_SH23, _SH31, _SH10 = _c(23, _I32), _c(31, _I32), _c(10, _I32)
_SH1U, _SH2U = _c(1, _U32), _c(2, _U32)
_EXP_OFFSET = _c(127 + 24, _I32)  # exponent of float32(k1) exceeds that of u1 by 24
_Q_BIAS = _c(1 << 29, _U32)  # w1 + 2**29: top two bits = q = ((k2 + 2**21) >> 22) mod 4
_QC_BIAS = _c(3 << 29, _U32)  # w1 + 3 * 2**29: bit 31 set <=> q + 1 in {2, 3} <=> cos < 0
_SIGN = _c(0x80000000, _U32)
_STEP = _c(K.PIO4_STEP, _F32)
_S1, _S2, _S3 = _c(K.S1, _F32), _c(K.S2, _F32), _c(K.S3, _F32)
_C1, _C2, _C3, _C4 = _c(K.C1, _F32), _c(K.C2, _F32), _c(K.C3, _F32), _c(K.C4, _F32)


def words32(raw: np.ndarray) -> np.ndarray:
    """32-bit word view of raw uint64 output: w[2m] = low half of r[m], w[2m+1] = high half."""
    # '<u8' -> '<u4' is a no-op view on little-endian hosts and a byte swap on big-endian ones.
    return raw.astype("<u8", copy=False).view("<u4")


class Views:
    """Views of one workspace's first n entries, made once per size (each .view() costs ~0.5 us)."""

    def __init__(self, base: np.ndarray, n_full: int, n: int) -> None:
        self.u = [base[i * n_full : i * n_full + n] for i in range(5)]  # uint32 scratch
        self.ui = [b.view(np.int32) for b in self.u]
        self.uf = [b.view(np.float32) for b in self.u]
        self.f = [base[i * n_full : i * n_full + n].view(np.float32) for i in range(5, 10)]  # float32 scratch
        self.fu = [b.view(np.uint32) for b in self.f]
        self.fi = [b.view(np.int32) for b in self.f]
        # a uint64 buffer overlaying f[3] and f[4], which are free while it is live
        self.q = base[8 * n_full : 10 * n_full].view(np.uint64)[:n]


class Workspace:
    """Scratch memory of one thread (10 x n 32-bit words), reused across chunks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.base = np.empty(10 * n, dtype=np.uint32)
        self._cache: dict[int, Views] = {}

    def views(self, n: int) -> Views:
        """Views of the first n entries of every buffer (cached for the few recurring sizes)."""
        views = self._cache.get(n)
        if views is None:
            views = Views(self.base, self.n, n)
            if len(self._cache) < 16:
                self._cache[n] = views
        return views


def workspace(n: int) -> Workspace:
    """This thread's workspace, (re)allocated when a chunk needs more room."""
    ws = getattr(_LOCAL, "ws", None)
    if ws is None or ws.n < n:
        ws = Workspace(n)
        _LOCAL.ws = ws
    return ws


def uniform_factor(low: float, high: float) -> tuple[float, float, bool]:
    """(low, factor, folded) for v = low + (high - low) * u with u = k * 2**-24.

    When (high - low) * 2**-24 is a normal float32 (or zero) it is exact, and then
    RN(k * ((high - low) * 2**-24)) == RN(u * (high - low)) bit for bit: one pass saved.
    """
    width = float(_F32(high) - _F32(low))
    folded = width == 0.0 or abs(width) >= 2.0**-102
    return float(_F32(low)), (width * K.TWO_M24 if folded else width), folded


def uniform(raw: np.ndarray, out: np.ndarray, low: float, high: float) -> None:
    """out[i] = low + (high - low) * ((w[i] >> 8) * 2**-24), float32."""
    w = words32(raw)
    lo, factor, folded = uniform_factor(low, high)
    v = workspace(w.size).views(w.size)
    np.right_shift(w, _SHIFT8, v.u[0])
    out[...] = v.ui[0]  # exact: k < 2**24
    if not folded:
        np.multiply(out, _c(K.TWO_M24, _F32), out)
    np.multiply(out, _c(factor, _F32), out)
    # width * u >= 0 is never -0, so adding low = +-0 is the identity and can be skipped
    if lo != 0.0:
        np.add(out, _c(lo, _F32), out)


def pm(raw: np.ndarray, out: np.ndarray, sigma: float) -> None:
    """out[i] = +sigma if bit 31 of w[i] is 0 else -sigma (a sign-bit flip, exact)."""
    w = words32(raw)
    bits = out.view(np.uint32)
    np.bitwise_and(w, _SIGN, bits)
    np.bitwise_xor(bits, _c(K.f32_bits(sigma), _U32), bits)


def split_words(raw: np.ndarray, v: Views) -> tuple[np.ndarray, np.ndarray]:
    """(w0, w1) = low and high 32 bits of each raw word, in v.u[4] and v.u[3]."""
    r = raw.astype("<u8", copy=False)
    # contiguous casts: ufuncs on strided uint32 views of raw cost ~5x a contiguous pass
    v.u[4][...] = r  # truncating cast keeps the low 32 bits
    np.right_shift(r, _SHIFT32, v.q)
    v.u[3][...] = v.q
    return v.u[4], v.u[3]


def radius(w0: np.ndarray, std: float, v: Views) -> np.ndarray:
    """sqrt(-2 ln(u1)) * std, u1 = ((w0 >> 8) + 1) * 2**-24, in v.f[1]. Uses u[0..1], f[0..4]."""
    u, ui, f = v.u, v.ui, v.f
    np.right_shift(w0, _SHIFT8, u[0])
    np.add(u[0], _ONE_U, u[0])  # k1 = (w0 >> 8) + 1 in [1, 2**24]
    f[0][...] = ui[0]  # float32(k1), exact
    np.add(v.fi[0], _LOG_SHIFT, ui[1])
    np.right_shift(ui[1], _SH23, ui[0])
    np.subtract(ui[0], _EXP_OFFSET, ui[0])
    f[1][...] = ui[0]  # k as float32, exact
    np.bitwise_and(ui[1], _LOG_MASK, ui[1])
    np.add(ui[1], _LOG_BASE, ui[1])
    m = v.uf[1]  # m in [sqrt(1/2), sqrt(2))
    np.subtract(m, _ONE_F, f[2])
    np.add(m, _ONE_F, f[3])
    np.divide(f[2], f[3], f[2])  # s
    np.multiply(f[2], f[2], f[3])  # z
    np.multiply(f[3], _NEG2_L3, f[4])
    np.add(f[4], _NEG2_L2, f[4])
    np.multiply(f[4], f[3], f[4])
    np.add(f[4], _NEG2_L1, f[4])
    np.multiply(f[4], f[3], f[4])
    np.multiply(f[4], f[2], f[4])
    np.multiply(f[2], _NEG4, f[2])
    np.add(f[2], f[4], f[2])  # -2 ln(m)
    np.multiply(f[1], _NEG2_LN2, f[1])
    np.add(f[1], f[2], f[1])  # -2 ln(u1)
    np.sqrt(f[1], f[1])
    if std != 1.0:  # rad * 1 == rad exactly
        np.multiply(f[1], _c(std, _F32), f[1])
    return f[1]


def cos_sin(w1: np.ndarray, v: Views) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of 2 pi u2, u2 = (w1 >> 8) * 2**-24, in v.f[4], v.f[3]. Uses u[0..3], f[0], f[2..4]."""
    u, ui, f = v.u, v.ui, v.f
    np.add(w1, _Q_BIAS, u[0])  # T: top two bits are the quadrant q
    np.left_shift(u[0], _SH1U, u[1])
    np.right_shift(ui[1], _SH31, ui[1])  # all ones where q is odd: swap sin and cos
    np.bitwise_and(u[0], _SIGN, u[0])  # sign bit of sin
    np.add(w1, _QC_BIAS, u[2])
    np.bitwise_and(u[2], _SIGN, u[2])  # sign bit of cos
    np.left_shift(w1, _SH2U, u[3])  # (w1 may live in u[3]; it is dead after this)
    np.right_shift(ui[3], _SH10, ui[3])  # r = k2 mod 2**22 as a signed 22-bit integer
    theta = f[0]
    theta[...] = ui[3]  # exact: |r| <= 2**21
    np.multiply(theta, _STEP, theta)
    x = f[2]
    np.multiply(theta, theta, x)
    sn, cs = f[3], f[4]
    np.multiply(x, _S3, sn)
    np.add(sn, _S2, sn)
    np.multiply(sn, x, sn)
    np.add(sn, _S1, sn)
    np.multiply(sn, x, sn)
    np.multiply(sn, theta, sn)
    np.add(sn, theta, sn)
    np.multiply(x, _C4, cs)
    np.add(cs, _C3, cs)
    np.multiply(cs, x, cs)
    np.add(cs, _C2, cs)
    np.multiply(cs, x, cs)
    np.add(cs, _C1, cs)
    np.multiply(cs, x, cs)
    np.add(cs, _ONE_F, cs)
    snb, csb = v.fu[3], v.fu[4]
    np.bitwise_xor(snb, csb, u[3])  # swap as a bit blend: d = (s ^ c) & mask; s ^= d; c ^= d
    np.bitwise_and(u[3], u[1], u[3])
    np.bitwise_xor(snb, u[3], snb)
    np.bitwise_xor(csb, u[3], csb)
    np.bitwise_xor(csb, u[2], csb)
    np.bitwise_xor(snb, u[0], snb)
    return cs, sn


def normal(raw: np.ndarray, out: np.ndarray, mean: float, std: float) -> None:
    """Box-Muller: pair j (elements 2j, 2j+1) from r[j] = (w0 low, w1 high); see the module notes."""
    v = workspace(raw.size).views(raw.size)
    w0, w1 = split_words(raw, v)
    rs = radius(w0, std, v)
    cs, sn = cos_sin(w1, v)
    np.multiply(rs, cs, cs)
    np.multiply(rs, sn, sn)
    if mean != 0.0:  # spec: the addition is omitted for mean = +-0
        np.add(cs, _c(mean, _F32), cs)
        np.add(sn, _c(mean, _F32), sn)
    out[0::2] = cs  # a strided copy is cheaper than a ufunc writing strided output
    out[1::2] = sn
