"""float32 distribution kernels on torch tensors: the spec's literal operation sequence.

Used on CUDA (and on CPU when `backend="torch"`, which is how the tests prove both agree bit for
bit). This twin deliberately follows formats/generator-v1.md word for word (octant-form angle,
no folded constants) rather than the numpy path's exact rewrites, so every CPU comparison of the
two backends also re-checks those rewrites. Each torch elementwise op is its own kernel, so no multiply and add can be contracted into a
fused multiply-add; scalars are exact float32 values passed as Python floats, which torch applies
in float32 (opmath of float32 is float32). Nothing here divides by a scalar: CUDA turns that into a
multiply by the reciprocal, which is not the correctly rounded quotient.

The one division and the one square root are computed in float64 and rounded to float32: torch's
CPU float32 sqrt is not correctly rounded (measured: 0.7 % of results 1 ulp off, it is a vector
math library approximation), whereas a float64 sqrt or quotient with error below 4 float64 ulps,
rounded once to float32, is the correctly rounded float32 result (2*24 + 2 <= 53). This also keeps
CUDA exact if a build ever used approximate single-precision division or sqrt.
"""

from __future__ import annotations

import torch

from fzpack.generator import constants as K
from fzpack.generator.constants import MASK32
from fzpack.generator.kernels_numpy import uniform_factor

def _div32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 a / b (via float64, see the module docstring)."""
    return (a.to(torch.float64) / b.to(torch.float64)).to(torch.float32)


def _sqrt32(a: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 sqrt(a) (via float64, see the module docstring)."""
    return torch.sqrt(a.to(torch.float64)).to(torch.float32)


def _halves(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low 32 bits, high 32 bits) of each 64-bit pattern, as non-negative int64."""
    return raw & MASK32, (raw >> 32) & MASK32


def words32(raw: torch.Tensor) -> torch.Tensor:
    """The 32-bit word stream w[2m] = low(r[m]), w[2m+1] = high(r[m]) as int64 values."""
    lo, hi = _halves(raw)
    return torch.stack((lo, hi), dim=1).reshape(-1)


def uniform(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """low + (high - low) * ((w >> 8) * 2**-24) for every word of `raw`."""
    lo, factor, folded = uniform_factor(low, high)
    v = (words32(raw) >> 8).to(torch.float32)
    if not folded:
        v = v * K.TWO_M24
    return (v * factor) + lo


def pm(raw: torch.Tensor, sigma: float) -> torch.Tensor:
    """+sigma where bit 31 of w is 0, else -sigma."""
    neg = ((words32(raw) >> 31) & 1).bool()
    s = torch.tensor(sigma, dtype=torch.float32, device=raw.device)
    return torch.where(neg, -s, s)


def log_u1(w0: torch.Tensor) -> torch.Tensor:
    """ln(((w0 >> 8) + 1) * 2**-24) in float32, the spec's polynomial logarithm."""
    u1 = ((w0 >> 8) + 1).to(torch.float32) * K.TWO_M24  # exact: k1 <= 2**24
    ix = u1.view(torch.int32) + K.LOG_BIAS_SHIFT
    k = ((ix >> 23) - 127).to(torch.float32)
    m = ((ix & K.LOG_MANT_MASK) + K.LOG_M_BASE).view(torch.float32)
    s = _div32(m - 1.0, m + 1.0)
    z = s * s
    p = z * K.L3
    p = p + K.L2
    p = p * z
    p = p + K.L1
    p = p * z
    p = p * s
    lnm = (s + s) + p
    return (k * K.LN2) + lnm


def sin_cos_poly(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) polynomials of float32 theta in [0, pi/4] (spec order of operations)."""
    x = theta * theta
    sn = x * K.S3
    sn = sn + K.S2
    sn = sn * x
    sn = sn + K.S1
    sn = sn * x
    sn = sn * theta
    sn = theta + sn
    cs = x * K.C4
    cs = cs + K.C3
    cs = cs * x
    cs = cs + K.C2
    cs = cs * x
    cs = cs + K.C1
    cs = cs * x
    cs = cs + 1.0
    return sn, cs


def cos_sin(w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of 2*pi*((w1 >> 8) * 2**-24) by the spec's exact octant reduction."""
    k2 = w1 >> 8
    octant = k2 >> K.OCTANT_SHIFT
    pos = k2 & (K.OCTANT_SIZE - 1)
    odd = (octant & 1).bool()
    pos = torch.where(odd, K.OCTANT_SIZE - pos, pos)
    theta = pos.to(torch.float32) * K.PIO4_STEP
    s, c = sin_cos_poly(theta)
    # octant o: (cos, sin) = (c,s) (s,c) (-s,c) (-c,s) (-c,-s) (-s,-c) (s,-c) (c,-s)
    swap = ((octant + 1) & 2).bool()  # octants 1, 2, 5, 6
    cos = torch.where(swap, s, c)
    sin = torch.where(swap, c, s)
    cos = torch.where(((octant + 2) & 4).bool(), -cos, cos)  # octants 2..5; negation is exact
    sin = torch.where((octant & 4).bool(), -sin, sin)  # octants 4..7
    return cos, sin


def normal(raw: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Box-Muller on the pairs of `raw`: 2 values per 64-bit word, interleaved (v0, v1)."""
    w0, w1 = _halves(raw)
    rs = _sqrt32(log_u1(w0) * -2.0) * std
    cos, sin = cos_sin(w1)
    v = torch.stack((rs * cos, rs * sin), dim=1).reshape(-1)
    if mean != 0.0:  # spec: the addition is omitted for mean = +-0
        v = v + mean
    return v
