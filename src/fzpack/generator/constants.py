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
