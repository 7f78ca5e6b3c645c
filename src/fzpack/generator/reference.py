"""Literal, slow transcription of formats/generator-v1.md: the oracle for tests and test vectors.

Nothing here is shared with the fast paths: Philox is pure Python integers, and every float32
operation is done in float64 and rounded to float32 right after (for +, -, *, / and sqrt of
float32 operands, float64 then one rounding equals the correctly rounded float32 result, because
53 >= 2 * 24 + 2). The angle uses the spec's octant form, not the fast path's quadrant rewrite.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from fzpack.generator import constants as K
from fzpack.generator.constants import MASK32, MASK64
from fzpack.generator.philox import stream_key
from fzpack.generator.spec import InitSpec


def philox_block(key: tuple[int, int], counter: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Philox4x64-10 of one 256-bit counter (4 words, word 0 least significant)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(K.PHILOX_ROUNDS):
        p0 = K.PHILOX_M0 * c0
        p1 = K.PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> 64) ^ c1 ^ k0, p1 & MASK64, (p0 >> 64) ^ c3 ^ k1, p0 & MASK64
        k0 = (k0 + K.PHILOX_W0) & MASK64
        k1 = (k1 + K.PHILOX_W1) & MASK64
    return c0, c1, c2, c3


def raw64(key: tuple[int, int], start: int, count: int) -> np.ndarray:
    """r[start : start + count]: r[m] is lane m % 4 of block m // 4 (counter (m // 4, 0, 0, 0))."""
    out = []
    for block in range(start // 4, (start + count + 3) // 4):
        out.extend(philox_block(key, (block, 0, 0, 0)))
    first = start - (start // 4) * 4
    return np.array(out[first : first + count], dtype=np.uint64)


def words32(key: tuple[int, int], start: int, count: int) -> np.ndarray:
    """w[start : start + count]: w[2m] = low 32 bits of r[m], w[2m + 1] = high 32 bits."""
    r = raw64(key, start // 2, (start + count + 1) // 2 - start // 2)
    w = np.empty(2 * r.size, dtype=np.int64)
    w[0::2] = (r & np.uint64(MASK32)).astype(np.int64)
    w[1::2] = (r >> np.uint64(32)).astype(np.int64)
    return w[start % 2 : start % 2 + count]


def rn(x: np.ndarray | float) -> np.ndarray:
    """Round to nearest float32 (ties to even), kept in a float64 array."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def f32_of_bits(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.int64).astype(np.uint32).view(np.float32).astype(np.float64)


def bits_of_f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32).view(np.uint32).astype(np.int64)


def uniform(w: np.ndarray, low: float, high: float) -> np.ndarray:
    """Spec 6.2: v = low + (high - low) * u, u = (w >> 8) * 2**-24."""
    u = rn((w >> 8) * K.TWO_M24)
    width = rn(rn(high) - rn(low))
    return rn(rn(low) + rn(width * u))


def pm(w: np.ndarray, sigma: float) -> np.ndarray:
    """Spec 6.4: +sigma if bit 31 of w is 0 else -sigma."""
    return np.where((w >> 31) & 1 == 0, rn(sigma), -rn(sigma))


def log_u1(w0: np.ndarray) -> np.ndarray:
    """Spec 6.3.1: ln(u1), u1 = ((w0 >> 8) + 1) * 2**-24, in float32 operations."""
    u1 = rn(((w0 >> 8) + 1) * K.TWO_M24)
    ix = bits_of_f32(u1) + K.LOG_BIAS_SHIFT
    k = rn((ix >> 23) - 127)
    m = f32_of_bits((ix & K.LOG_MANT_MASK) + K.LOG_M_BASE)
    s = rn(rn(m - 1.0) / rn(m + 1.0))
    z = rn(s * s)
    p = rn(z * K.L3)
    p = rn(p + K.L2)
    p = rn(p * z)
    p = rn(p + K.L1)
    p = rn(p * z)
    p = rn(p * s)
    lnm = rn(rn(s + s) + p)
    return rn(rn(k * K.LN2) + lnm)


def sin_cos_poly(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spec 6.3.2: (sin t, cos t) polynomials for float32 t in [0, pi/4]."""
    x = rn(theta * theta)
    sn = rn(x * K.S3)
    sn = rn(sn + K.S2)
    sn = rn(sn * x)
    sn = rn(sn + K.S1)
    sn = rn(sn * x)
    sn = rn(sn * theta)
    sn = rn(theta + sn)
    cs = rn(x * K.C4)
    cs = rn(cs + K.C3)
    cs = rn(cs * x)
    cs = rn(cs + K.C2)
    cs = rn(cs * x)
    cs = rn(cs + K.C1)
    cs = rn(cs * x)
    cs = rn(cs + 1.0)
    return sn, cs


def cos_sin(w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spec 6.3.2: (cos, sin) of 2*pi*u2, u2 = (w1 >> 8) * 2**-24, by exact octant reduction."""
    k2 = w1 >> 8
    octant = k2 >> K.OCTANT_SHIFT
    pos = k2 & (K.OCTANT_SIZE - 1)
    pos = np.where(octant & 1 == 1, K.OCTANT_SIZE - pos, pos)
    theta = rn(rn(pos) * K.PIO4_STEP)
    s, c = sin_cos_poly(theta)
    table = [(c, s), (s, c), (-s, c), (-c, s), (-c, -s), (-s, -c), (s, -c), (c, -s)]
    cos = np.select([octant == o for o in range(8)], [t[0] for t in table])
    sin = np.select([octant == o for o in range(8)], [t[1] for t in table])
    return cos, sin


def normal_pairs(r: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Spec 6.3: values 2j and 2j+1 from the 64-bit word r[j], interleaved."""
    r = np.asarray(r, dtype=np.uint64)
    w0 = (r & np.uint64(MASK32)).astype(np.int64)
    w1 = (r >> np.uint64(32)).astype(np.int64)
    rad = rn(np.sqrt(rn(log_u1(w0) * -2.0)))
    rs = rn(rad * rn(std))
    cos, sin = cos_sin(w1)
    out = np.empty(2 * r.size, dtype=np.float64)
    out[0::2] = rn(rs * cos)
    out[1::2] = rn(rs * sin)
    if mean != 0.0:  # the addition is omitted for mean = +-0 (it would turn -0 into +0)
        out = rn(out + rn(mean))
    return out


def dct_value(shape: Sequence[int], i: int) -> float:
    """Spec 6.7: element i of the dct tensor of `shape`, in Python ints and binary64 floats.

    Python's int arithmetic is exact and each float `+`, `-`, `*` is one IEEE binary64 operation
    (CPython never fuses two of them), so this is the spec's sequence literally.
    """
    out, c_in = shape[0], shape[1]
    spatial = 1
    for d in shape[2:]:
        spatial *= d
    patch = c_in * spatial
    big_n = max(out, patch)
    k, rem = divmod(i, patch)
    c, s = divmod(rem, spatial)
    n = s * c_in + c
    m = ((2 * n + 1) * k) % (4 * big_n)
    if m > 2 * big_n:
        m = 4 * big_n - m
    neg = False
    if m > big_n:
        m = 2 * big_n - m
        neg = True
    use_sin = 2 * m > big_n
    j = big_n - m if use_sin else m
    cn = K.PI64 / float(2 * big_n)
    x = float(j) * cn
    z = x * x
    if use_sin:
        p = z * K.DCT_SIN[5]
        for coef in reversed(K.DCT_SIN[:5]):  # S5, S4, S3, S2, S1
            p = p + coef
            p = p * z
        p = p * x
        y = x + p
    else:
        q = z * K.DCT_COS[5]
        for coef in (*reversed(K.DCT_COS[:5]), -0.5):  # C5, ..., C1, -1/2
            q = q + coef
            q = q * z
        y = q + 1.0
    sk = math.sqrt(1.0 / float(big_n)) if k == 0 else math.sqrt(2.0 / float(big_n))
    t = sk * y
    if neg:
        t = -t
    return float(np.float32(t))


def dct_values(shape: Sequence[int], start: int, count: int) -> np.ndarray:
    """Spec 6.7: elements [start, start + count) of the dct tensor of `shape`, as float32."""
    return np.array([dct_value(shape, i) for i in range(start, start + count)], dtype=np.float32)


def values(
    spec: InitSpec,
    seed: int,
    name: str,
    start: int,
    count: int,
    banks: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Elements [start, start + count) of tensor `name` as float32, straight from the spec."""
    key = stream_key(seed, K.INIT, name)
    if spec.dist == "dct":
        assert shape is not None
        return dct_values(shape, start, count)
    if spec.dist == "zeros":
        return np.zeros(count, dtype=np.float32)
    if spec.dist == "uniform":
        return uniform(words32(key, start, count), spec.p0, spec.p1).astype(np.float32)
    if spec.dist == "pm":
        return pm(words32(key, start, count), spec.p0).astype(np.float32)
    if spec.dist == "normal":
        first = start // 2
        pairs = normal_pairs(raw64(key, first, (start + count + 1) // 2 - first), spec.p0, spec.p1)
        return pairs[start - 2 * first : start - 2 * first + count].astype(np.float32)
    assert spec.dist == "bank" and banks is not None
    length = banks[spec.bank]
    bank_key = stream_key(seed, K.BANK, spec.bank)
    bank = uniform(words32(bank_key, 0, length), -1.0, 1.0)
    idx = (spec.offset + start + np.arange(count)) % length
    return rn(bank[idx] * rn(spec.p0)).astype(np.float32)


def mask_indices(seed: int, name: str, n: int, k: int) -> list[int]:
    """Spec 8: the first k indices of range(n) sorted by (r[i], i)."""
    r = raw64(stream_key(seed, K.MASK, name), 0, n)
    return sorted(sorted(range(n), key=lambda i: (int(r[i]), i))[:k])


def mask_rows_indices(seed: int, name: str, shape: Sequence[int], k: int) -> list[int]:
    """Spec 8.1: per row r, the first k_r flat indices of the row sorted by (r[i], i)."""
    numel = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    if rows == 0:
        return []
    width = numel // rows
    r = raw64(stream_key(seed, K.MASK, name), 0, numel)
    chosen: list[int] = []
    for row in range(rows):
        k_row = k // rows + (1 if row < k % rows else 0)
        positions = range(row * width, row * width + width)
        chosen += sorted(positions, key=lambda i: (int(r[i]), i))[:k_row]
    return sorted(chosen)
