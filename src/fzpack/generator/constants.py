"""Normative constants of generator v1 (formats/generator-v1.md): Philox, stream purposes, float32 bits.

Every float constant is defined by its float32 bit pattern, not by a decimal literal, so that the
value cannot drift with a different decimal parser or a different rounding of a formula. The
formula each pattern was rounded from is kept next to it for the reader (and checked by a test).
"""

from __future__ import annotations

import struct

#: Stream purposes: the high 32 bits of key word 0.
INIT = 1
MASK = 2
BANK = 3
PURPOSES = {"INIT": INIT, "MASK": MASK, "BANK": BANK}

#: Philox4x64 multipliers and Weyl key increments (Random123, philox.h).
PHILOX_M0 = 0xD2E7470EE14C6C93
PHILOX_M1 = 0xCA5A826395121157
PHILOX_W0 = 0x9E3779B97F4A7C15
PHILOX_W1 = 0xBB67AE8584CAA73B
PHILOX_ROUNDS = 10

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

#: Largest supported seed (exclusive bound is 2**32).
SEED_MAX = MASK32


def f32_from_bits(bits: int) -> float:
    """The float32 whose IEEE-754 bit pattern is `bits`, as an (exact) Python float."""
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_bits(value: float) -> int:
    """The IEEE-754 binary32 bit pattern of `value` rounded to nearest float32."""
    return struct.unpack("<I", struct.pack("<f", value))[0]


# name -> (bit pattern, what it is). Order is the spec's table order. The polynomial coefficients
# are Chebyshev (near-minimax) fits rounded to float32, made by
# formats/vectors/fit_generator_coefficients.py; the bit patterns, not the fit, are normative.
FLOAT_BITS: dict[str, tuple[int, str]] = {
    "TWO_M24": (0x33800000, "2**-24"),
    # ln(x) = k*LN2 + ln(m), x = 2**k * m, m in [sqrt(1/2), sqrt(2)).
    "LN2": (0x3F317218, "ln 2"),
    # ln(m) = 2s + s*z*(L1 + z*(L2 + z*L3)), s = (m-1)/(m+1), z = s*s, |s| <= 0.1716.
    "L1": (0x3F2AAAAE, "~2/3"),
    "L2": (0x3ECCBE18, "~2/5"),
    "L3": (0x3E977308, "~2/7"),
    # angle of one step of the 21-bit in-octant position: (pi/4) / 2**21 = pi * 2**-23.
    "PIO4_STEP": (0x34C90FDB, "pi * 2**-23"),
    # sin(t) = t + t*x*(S1 + x*(S2 + x*S3)), x = t*t, |t| <= pi/4.
    "S1": (0xBE2AAAA9, "~-1/3!"),
    "S2": (0x3C088614, "~1/5!"),
    "S3": (0xB94D64D8, "~-1/7!"),
    # cos(t) = 1 + x*(C1 + x*(C2 + x*(C3 + x*C4))), x = t*t, |t| <= pi/4.
    "C1": (0xBF000000, "-1/2"),
    "C2": (0x3D2AAAA6, "~1/4!"),
    "C3": (0xBAB60704, "~-1/6!"),
    "C4": (0x37CD3796, "~1/8!"),
}

F = {name: f32_from_bits(bits) for name, (bits, _) in FLOAT_BITS.items()}

TWO_M24 = F["TWO_M24"]
LN2 = F["LN2"]
L1, L2, L3 = F["L1"], F["L2"], F["L3"]
PIO4_STEP = F["PIO4_STEP"]
S1, S2, S3 = F["S1"], F["S2"], F["S3"]
C1, C2, C3, C4 = F["C1"], F["C2"], F["C3"], F["C4"]

#: ln range reduction (musl logf): bits + LOG_BIAS_SHIFT moves [sqrt(1/2), sqrt(2)) onto one binade.
LOG_BIAS_SHIFT = 0x3F800000 - 0x3F3504F3  # 0x004AFB0D
LOG_M_BASE = 0x3F3504F3  # float32 bits of sqrt(1/2) rounded
LOG_MANT_MASK = 0x007FFFFF

#: Octant geometry of the 24-bit angle integer k2: octant = k2 >> 21, position = k2 & (2**21 - 1).
OCTANT_SHIFT = 21
OCTANT_SIZE = 1 << OCTANT_SHIFT


def f64_from_bits(bits: int) -> float:
    """The float64 whose IEEE-754 bit pattern is `bits` (a Python float is a binary64)."""
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def f64_bits(value: float) -> int:
    """The IEEE-754 binary64 bit pattern of `value`."""
    return struct.unpack("<Q", struct.pack("<d", value))[0]


# dist "dct" (spec section 6.7) works in binary64: name -> (bit pattern, what it is). PI64 is the
# double nearest pi; S1..S6 and C1..C6 are the minimax coefficients of fdlibm's __kernel_sin and
# __kernel_cos (|error| < 2**-58 on [-pi/4, pi/4]). The bit patterns, not the decimals, are normative.
DCT_BITS: dict[str, tuple[int, str]] = {
    "PI64": (0x400921FB54442D18, "pi"),
    # sin(x) = x + x*z*(S1 + z*(S2 + ... + z*S6)), z = x*x
    "DS1": (0xBFC5555555555549, "~-1/3!"),
    "DS2": (0x3F8111111110F8A6, "~1/5!"),
    "DS3": (0xBF2A01A019C161D5, "~-1/7!"),
    "DS4": (0x3EC71DE357B1FE7D, "~1/9!"),
    "DS5": (0xBE5AE5E68A2B9CEB, "~-1/11!"),
    "DS6": (0x3DE5D93A5ACFD57C, "~1/13!"),
    # cos(x) = 1 + z*(-1/2 + z*(C1 + z*(C2 + ... + z*C6)))
    "DC1": (0x3FA555555555554C, "~1/4!"),
    "DC2": (0xBF56C16C16C15177, "~-1/6!"),
    "DC3": (0x3EFA01A019CB1590, "~1/8!"),
    "DC4": (0xBE927E4F809C52AD, "~-1/10!"),
    "DC5": (0x3E21EE9EBDB4B1C4, "~1/12!"),
    "DC6": (0xBDA8FAE9BE8838D4, "~-1/14!"),
}

D = {name: f64_from_bits(bits) for name, (bits, _) in DCT_BITS.items()}
PI64 = D["PI64"]
DCT_SIN = tuple(D[f"DS{i}"] for i in range(1, 7))
DCT_COS = tuple(D[f"DC{i}"] for i in range(1, 7))
#: Largest DCT size N = max(out, patch_dim): (2n+1)*k < 2 N**2 <= 2**61 stays exact in int64.
DCT_MAX_N = 1 << 30
