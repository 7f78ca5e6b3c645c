"""Compiled (numba) kernels of generator v1: Philox4x64-10 and every distribution, in one pass.

The numpy path (`kernels_numpy.py`) makes ~60 ufunc passes over L2-sized scratch buffers per
chunk; these kernels compute each value start to finish in registers, so regeneration costs the
Philox rounds plus a few dozen float operations per element and one store. They are exact
transcriptions of the numpy kernels (same exact rewrites of formats/generator-v1.md, named
there), and the tests compare them with it, with the pure-Python reference and with the spec's
vectors bit for bit.

Bit-exactness (spec section 10) in a compiler:
* fastmath=False (numba's default, stated anyway): no reassociation, no reciprocal division, no
  approximate sqrt, and no `contract` flag on any instruction, so LLVM never fuses a multiply and
  an add into an FMA (it only does so for instructions marked `contract` or under a global
  fp-contract=fast, which numba does not set). The tests check every distribution against the
  numpy path under the default CPU target and under NUMBA_CPU_NAME=generic, and the angle and
  radius of all 2**24 inputs.
* Every float constant is a numpy float32 (float64 for dct) global, so numba types the arithmetic
  in float32: a Python float literal would silently promote the expression to float64.
* Integers are uint64 / int64 with explicit masks: numba promotes narrower integers to 64 bits,
  and mixing signed and unsigned 64-bit integers gives float64, so every constant is typed.
* float32 `/` and `np.sqrt` are LLVM `fdiv` and `llvm.sqrt.f32`: correctly rounded IEEE operations.

The kernels hold no GIL (nogil=True) and are sequential: `regen.py` splits a range over its own
thread pool, so the result is independent of the thread count by construction, and no numba
threading layer is involved (the default one, workqueue, aborts when two threads launch parallel
kernels at once, which a restore that builds several tensors concurrently would do).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from fzpack.generator import constants as K

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")

_U64 = np.uint64
_M32 = _U64(0xFFFFFFFF)
_SH8, _SH32 = _U64(8), _U64(32)
_ONE64 = _U64(1)
_PM0, _PM1 = _U64(K.PHILOX_M0), _U64(K.PHILOX_M1)
_PW0, _PW1 = _U64(K.PHILOX_W0), _U64(K.PHILOX_W1)
_Z64 = _U64(0)

_F32 = np.float32
_NEG2_LN2 = _F32(-2.0 * K.LN2)  # -2 folded into the ln constants (exact: scaling by -2 commutes with rounding)
_NEG2_L1, _NEG2_L2, _NEG2_L3 = _F32(-2.0 * K.L1), _F32(-2.0 * K.L2), _F32(-2.0 * K.L3)
_NEG4 = _F32(-4.0)
_ONE_F = _F32(1.0)
_STEP = _F32(K.PIO4_STEP)
_S1, _S2, _S3 = _F32(K.S1), _F32(K.S2), _F32(K.S3)
_C1, _C2, _C3, _C4 = _F32(K.C1), _F32(K.C2), _F32(K.C3), _F32(K.C4)
_TWO_M24 = _F32(K.TWO_M24)
_LOG_SHIFT = np.int64(K.LOG_BIAS_SHIFT)
_LOG_MASK = np.int64(K.LOG_MANT_MASK)
_LOG_BASE = np.int64(K.LOG_M_BASE)
_EXP_OFFSET = np.int64(127 + 24)  # exponent of float32(k1) exceeds that of u1 = k1 * 2**-24 by 24
_Q_BIAS = _U64(1 << 29)  # (w1 + 2**29) mod 2**32: top two bits = q = ((k2 + 2**21) >> 22) mod 4
_QC_BIAS = _U64(3 << 29)  # bit 31 of (w1 + 3 * 2**29) mod 2**32: cos < 0
_SIGN = _U64(0x80000000)
_SH2, _SH10, _SH30 = _U64(2), _U64(10), _U64(30)
_R22_SIGN = np.int64(1 << 21)
_R22_MASK = np.int64((1 << 22) - 1)

#: Philox blocks per scratch chunk (32 K elements: raw words and values stay in L1/L2).
CHUNK_BLOCKS = 4096


# -- LLVM intrinsics: the 64 x 64 -> 128-bit product and float32 <-> int32 bit casts ----------


@intrinsic
def _mulhilo(typingctx, a, b):
    """(high, low) 64-bit halves of the 128-bit product a * b (one `mul` instruction on x86-64)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        lo = builder.trunc(p, ir.IntType(64))
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@intrinsic
def _f32_bits(typingctx, x):
    """The bit pattern of float32 x as int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, x):
    """The float32 whose bit pattern is int32 x."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


# -- Philox4x64-10 -----------------------------------------------------------------------------

_M0L, _M0H = _U64(K.PHILOX_M0 & 0xFFFFFFFF), _U64(K.PHILOX_M0 >> 32)
_M1L, _M1H = _U64(K.PHILOX_M1 & 0xFFFFFFFF), _U64(K.PHILOX_M1 >> 32)


@njit(inline="always", **_JIT)
def _mulhi(a, bl, bh):
    """High 64 bits of a * b (b = bh * 2**32 + bl) from four 32 x 32 -> 64-bit products.

    Slower than one 128-bit multiply per call, but, unlike it, vectorisable: a loop over blocks
    runs 8 blocks per AVX-512 instruction (vpmuludq), ~20 % faster than the scalar `mulx` loop.
    """
    al, ah = a & _M32, a >> _SH32
    p0, p1, p2, p3 = al * bl, al * bh, ah * bl, ah * bh
    mid = (p0 >> _SH32) + (p1 & _M32) + (p2 & _M32)
    return p3 + (p1 >> _SH32) + (p2 >> _SH32) + (mid >> _SH32)


@njit(inline="always", **_JIT)
def _round(c0, c1, c2, c3, k0, k1):
    hi0, lo0 = _mulhi(c0, _M0L, _M0H), c0 * _PM0
    hi1, lo1 = _mulhi(c2, _M1L, _M1H), c2 * _PM1
    return hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0


@njit(inline="always", **_JIT)
def _block_counter(k0, k1, c0):
    """Philox4x64-10 of the counter (c0, 0, 0, 0) (spec section 2), the ten rounds written out so
    that the loop over blocks around it is the innermost loop (which LLVM vectorises)."""
    c1 = c2 = c3 = _Z64
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _PW0, k1 + _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(2) * _PW0, k1 + _U64(2) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(3) * _PW0, k1 + _U64(3) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(4) * _PW0, k1 + _U64(4) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(5) * _PW0, k1 + _U64(5) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(6) * _PW0, k1 + _U64(6) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(7) * _PW0, k1 + _U64(7) * _PW1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0 + _U64(8) * _PW0, k1 + _U64(8) * _PW1)
    return _round(c0, c1, c2, c3, k0 + _U64(9) * _PW0, k1 + _U64(9) * _PW1)


@njit(inline="always", **_JIT)
def _block(k0, k1, c0, c1, c2, c3):
    """Philox4x64-10 of a full 256-bit counter (spec section 2), with the 128-bit multiply."""
    for _ in range(10):
        hi0, lo0 = _mulhilo(_PM0, c0)
        hi1, lo1 = _mulhilo(_PM1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 += _PW0
        k1 += _PW1
    return c0, c1, c2, c3


@njit(**_JIT)
def philox_blocks(k0, k1, counter, out):
    """Blocks with counters (counter + b, 0, 0, 0), b < len(out) // 4, into out[4b : 4b + 4].

    Args:
        k0, k1: the key as uint64.
        counter: uint64 counter word 0 of the first block (wraps modulo 2**64).
        out: uint64 array whose length is a multiple of 4.
    """
    for b in range(out.size // 4):
        r0, r1, r2, r3 = _block_counter(k0, k1, counter + _U64(b))
        out[4 * b] = r0
        out[4 * b + 1] = r1
        out[4 * b + 2] = r2
        out[4 * b + 3] = r3


@njit(**_JIT)
def philox_halves(k0, k1, counter, lo, hi):
    """Like philox_blocks, as 32-bit halves: lo[m] = r[m] & 0xFFFFFFFF, hi[m] = r[m] >> 32.

    The samplers then run on 32-bit lanes (16 per AVX-512 register instead of 8).
    """
    for b in range(lo.size // 4):
        r0, r1, r2, r3 = _block_counter(k0, k1, counter + _U64(b))
        lo[4 * b], hi[4 * b] = np.uint32(r0 & _M32), np.uint32(r0 >> _SH32)
        lo[4 * b + 1], hi[4 * b + 1] = np.uint32(r1 & _M32), np.uint32(r1 >> _SH32)
        lo[4 * b + 2], hi[4 * b + 2] = np.uint32(r2 & _M32), np.uint32(r2 >> _SH32)
        lo[4 * b + 3], hi[4 * b + 3] = np.uint32(r3 & _M32), np.uint32(r3 >> _SH32)


@njit(**_JIT)
def philox_counter(k0, k1, c0, c1, c2, c3):
    """One block of a full 256-bit counter (for the known-answer tests), as a uint64 array of 4."""
    out = np.empty(4, dtype=np.uint64)
    out[0], out[1], out[2], out[3] = _block(k0, k1, c0, c1, c2, c3)
    return out


# -- per-word samplers (transcriptions of kernels_numpy; see its module notes) ------------------


@njit(inline="always", **_JIT)
def _radius(w0, std, scaled):
    """sqrt(-2 ln(u1)) (* std), u1 = ((w0 >> 8) + 1) * 2**-24: spec 6.3.1 with the -2 folded in."""
    f = _F32(np.int32((w0 >> _SH8) + _ONE64))  # float32(k1), exact: k1 <= 2**24
    ix = np.int64(_f32_bits(f)) + _LOG_SHIFT
    kf = _F32(np.int32((ix >> 23) - _EXP_OFFSET))  # k of u1, exact
    m = _bits_f32(np.int32((ix & _LOG_MASK) + _LOG_BASE))
    s = (m - _ONE_F) / (m + _ONE_F)
    z = s * s
    p = z * _NEG2_L3
    p = p + _NEG2_L2
    p = p * z
    p = p + _NEG2_L1
    p = p * z
    p = p * s
    x = kf * _NEG2_LN2 + (s * _NEG4 + p)  # (k * -2LN2) + ((-4s) + p): the spec's order
    r = np.sqrt(x)
    return r * std if scaled else r


@njit(inline="always", **_JIT)
def _cos_sin(w1):
    """(cos, sin) of 2 pi (w1 >> 8) 2**-24 by the signed-quadrant rewrite of spec 6.3.2."""
    t = (w1 + _Q_BIAS) & _M32
    swap = -np.int64((t >> _SH30) & _ONE64)  # all ones where q is odd: exchange sin and cos
    sin_sign = np.int64(t & _SIGN)
    cos_sign = np.int64((w1 + _QC_BIAS) & _SIGN)
    r = np.int64((w1 >> _SH8) & _U64(0x3FFFFF))  # k2 mod 2**22, then as a signed 22-bit integer
    r = r - ((r & _R22_SIGN) << 1)
    theta = _F32(np.int32(r)) * _STEP  # exact conversion: |r| <= 2**21
    x = theta * theta
    sn = x * _S3
    sn = sn + _S2
    sn = sn * x
    sn = sn + _S1
    sn = sn * x
    sn = sn * theta
    sn = sn + theta
    cs = x * _C4
    cs = cs + _C3
    cs = cs * x
    cs = cs + _C2
    cs = cs * x
    cs = cs + _C1
    cs = cs * x
    cs = cs + _ONE_F
    sb = np.int64(_f32_bits(sn)) & np.int64(0xFFFFFFFF)
    cb = np.int64(_f32_bits(cs)) & np.int64(0xFFFFFFFF)
    d = (sb ^ cb) & swap  # bit blend: swap where q is odd
    sb ^= d ^ sin_sign
    cb ^= d ^ cos_sign
    return _bits_f32(np.int32(np.uint32(cb))), _bits_f32(np.int32(np.uint32(sb)))


@njit(inline="always", **_JIT)
def _uniform_one(w, low, factor, folded, has_low):
    v = _F32(np.int32(w >> _SH8)) if folded else _F32(np.int32(w >> _SH8)) * _TWO_M24
    v = v * factor
    return v + low if has_low else v


# -- range drivers: values of elements [start, start + count) into out --------------------------


@njit(**_JIT)
def normal_halves(lo, hi, mean, std, out):
    """out[2j], out[2j + 1] = the normal pair of word j = (lo[j], hi[j]) (len(out) == 2 * len(lo))."""
    scaled, has_mean = std != _ONE_F, mean != _F32(0.0)
    for j in range(lo.size):
        rs = _radius(_U64(lo[j]), std, scaled)
        c, s = _cos_sin(_U64(hi[j]))
        v0 = rs * c
        v1 = rs * s
        if has_mean:  # spec: the addition is omitted for mean = +-0
            v0 = v0 + mean
            v1 = v1 + mean
        out[2 * j] = v0
        out[2 * j + 1] = v1


@njit(**_JIT)
def normal_raw(raw, mean, std, out):
    """out[2j], out[2j + 1] = the normal pair of raw word j (len(out) == 2 * len(raw))."""
    normal_halves((raw & _M32).astype(np.uint32), (raw >> _SH32).astype(np.uint32), mean, std, out)


@njit(**_JIT)
def uniform_halves(lo, hi, low, factor, folded, out):
    """out[2j], out[2j + 1] = uniform values of the 32-bit words lo[j] and hi[j] (spec 6.2)."""
    has_low = low != _F32(0.0)
    for j in range(lo.size):
        out[2 * j] = _uniform_one(_U64(lo[j]), low, factor, folded, has_low)
        out[2 * j + 1] = _uniform_one(_U64(hi[j]), low, factor, folded, has_low)


@njit(**_JIT)
def pm_halves(lo, hi, sigma_bits, out):
    """out as int32 bit patterns: sigma with the sign bit of each 32-bit word (spec 6.4)."""
    for j in range(lo.size):
        out[2 * j] = np.int32(np.uint32((_U64(lo[j]) & _SIGN) ^ sigma_bits))
        out[2 * j + 1] = np.int32(np.uint32((_U64(hi[j]) & _SIGN) ^ sigma_bits))


@njit(**_JIT)
def fill(dist, k0, k1, start, count, p0, p1, folded, out):
    """Elements [start, start + count) of a normal (0), uniform (1) or pm (2) stream into out.

    Args:
        dist: 0 normal(mean=p0, std=p1), 1 uniform(low=p0, factor=p1, folded), 2 pm (p0 = sigma).
        k0, k1: the stream key as uint64.
        start, count: the element range (start + count <= 2**62).
        p0, p1: float32 parameters (uniform: `kernels_numpy.uniform_factor`'s low and factor).
        folded: uniform only: p1 already includes the 2**-24.
        out: float32 array of length count.
    """
    if count <= 0:
        return
    end = start + count
    b_first, b_last = start // 8, (end + 7) // 8  # 8 elements per block (spec section 3)
    lo = np.empty(4 * CHUNK_BLOCKS, dtype=np.uint32)
    hi = np.empty(4 * CHUNK_BLOCKS, dtype=np.uint32)
    vals = np.empty(8 * CHUNK_BLOCKS, dtype=np.float32)
    bits = vals.view(np.int32)
    sigma_bits = _U64(np.uint32(_f32_bits(p0)))
    for b0 in range(b_first, b_last, CHUNK_BLOCKS):
        nb = min(CHUNK_BLOCKS, b_last - b0)
        lo_c, hi_c = lo[: 4 * nb], hi[: 4 * nb]
        philox_halves(k0, k1, _U64(b0), lo_c, hi_c)
        lo_e, hi_e = max(start, 8 * b0), min(end, 8 * (b0 + nb))  # the part of this chunk inside [start, end)
        whole = lo_e == 8 * b0 and hi_e == 8 * (b0 + nb)
        v = out[lo_e - start : hi_e - start] if whole else vals[: 8 * nb]  # whole chunks: straight into out
        if dist == 0:
            normal_halves(lo_c, hi_c, p0, p1, v)
        elif dist == 1:
            uniform_halves(lo_c, hi_c, p0, p1, folded, v)
        else:
            pm_halves(lo_c, hi_c, sigma_bits, v.view(np.int32) if whole else bits[: 8 * nb])
        if not whole:
            out[lo_e - start : hi_e - start] = v[lo_e - 8 * b0 : hi_e - 8 * b0]


# -- dct (spec 6.7): binary64, exact integer angle reduction ------------------------------------

_DS = tuple(np.float64(c) for c in K.DCT_SIN)
_DC = tuple(np.float64(c) for c in K.DCT_COS)
_DS1, _DS2, _DS3, _DS4, _DS5, _DS6 = _DS
_DC1, _DC2, _DC3, _DC4, _DC5, _DC6 = _DC
_HALF_NEG = np.float64(-0.5)
_ONE_D = np.float64(1.0)


@njit(**_JIT)
def dct_fill(start, count, patch, spatial, c_in, n, cn, sk0, sk1, out):
    """Elements [start, start + count) of the dct tensor into out (float32), spec 6.7.3's order.

    Args:
        start, count: flat element range.
        patch, spatial, c_in, n: the layout (patch_dim, prod(kernel), shape[1], N).
        cn, sk0, sk1: the per-tensor binary64 constants (`dct.dct_constants`).
        out: float32 array of length count.
    """
    n2, n4 = 2 * n, 4 * n
    for t in range(count):
        i = start + t
        k = i // patch
        rem = i - k * patch
        c = rem // spatial
        col = (rem - c * spatial) * c_in + c
        m = ((2 * col + 1) * k) % n4  # < 2 N**2 <= 2**61 before the modulo: exact in int64
        if m > n2:
            m = n4 - m
        neg = m > n
        if neg:
            m = n2 - m
        use_sin = 2 * m > n
        j = n - m if use_sin else m
        x = np.float64(j) * cn
        z = x * x
        if use_sin:
            p = z * _DS6
            p = p + _DS5
            p = p * z
            p = p + _DS4
            p = p * z
            p = p + _DS3
            p = p * z
            p = p + _DS2
            p = p * z
            p = p + _DS1
            p = p * z
            p = p * x
            y = x + p
        else:
            y = z * _DC6
            y = y + _DC5
            y = y * z
            y = y + _DC4
            y = y * z
            y = y + _DC3
            y = y * z
            y = y + _DC2
            y = y * z
            y = y + _DC1
            y = y * z
            y = y + _HALF_NEG
            y = y * z
            y = y + _ONE_D
        v = y * (sk0 if k == 0 else sk1)
        out[t] = np.float32(-v if neg else v)
