"""How the polynomial coefficients of generator v1 were obtained (informative; needs mpmath).

Chebyshev fits (mpmath.chebyfit, near-minimax in absolute error) of the auxiliary functions below,
each coefficient rounded to float32. The bit patterns in formats/generator-v1.md section 5 and in
src/fzpack/generator/constants.py are normative; this script only documents their origin and checks
that it still reproduces them.

    python formats/vectors/fit_generator_coefficients.py
"""

from __future__ import annotations

import struct
import sys

import mpmath as mp

EXPECTED = {
    "S": [0xBE2AAAA9, 0x3C088614, 0xB94D64D8],
    "C": [0xBF000000, 0x3D2AAAA6, 0xBAB60704, 0x37CD3796],
    "L": [0x3F2AAAAE, 0x3ECCBE18, 0x3E977308],
}


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def fit(f, b, n: int) -> tuple[list[int], float]:
    """Degree n-1 polynomial in x on [0, b], coefficients ascending, as float32 bit patterns."""
    poly, err = mp.chebyfit(f, [0, b], n, error=True)
    return [f32_bits(float(c)) for c in poly[::-1]], float(err)


def main() -> int:
    mp.mp.dps = 40
    x_max = (mp.pi / 4) ** 2  # theta in [-pi/4, pi/4], x = theta**2
    s_max = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)  # |s| for m in [sqrt(1/2), sqrt(2))
    fits = {
        # sin t = t + t*x*S(x):  S(x) = (sin t - t) / t**3
        "S": fit(lambda x: (mp.sin(mp.sqrt(x)) - mp.sqrt(x)) / x**1.5 if x else mp.mpf(-1) / 6, x_max, 3),
        # cos t = 1 + x*C(x):  C(x) = (cos t - 1) / t**2
        "C": fit(lambda x: (mp.cos(mp.sqrt(x)) - 1) / x if x else mp.mpf(-1) / 2, x_max, 4),
        # ln m = 2s + s*z*L(z), z = s**2:  L(z) = (2 atanh s - 2s) / s**3
        "L": fit(lambda z: (2 * mp.atanh(mp.sqrt(z)) - 2 * mp.sqrt(z)) / z**1.5 if z else mp.mpf(2) / 3,
                 s_max**2, 3),
    }
    ok = True
    for name, (coeffs, err) in fits.items():
        print(f"{name}: {' '.join(f'0x{c:08X}' for c in coeffs)}  (fit error {err:.2e})")
        ok &= coeffs == EXPECTED[name]
    print("matches the spec" if ok else "DIFFERS from the spec (the spec's bit patterns stay normative)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
