"""Philox4x64-10 in pure torch integer ops: the device-independent (CUDA) path.

torch has no uint64 arithmetic, so 64-bit words live in int64 tensors as their bit patterns.
Addition and multiplication wrap modulo 2**64 on every torch backend, which is exactly unsigned
arithmetic on the patterns; right shifts are arithmetic, so every logical shift is followed by a
mask. The 64x64 -> 128-bit product is assembled from four 32x32-bit partial products.
"""

from __future__ import annotations

from typing import Any

import torch

from fzpack.generator.constants import (
    MASK32,
    MASK64,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
)


def as_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit value as the signed int64 with the same bits."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 64-bit halves of the 128-bit product a * m, a int64 bit patterns, m a uint64 constant."""
    m_lo, m_hi = m & MASK32, m >> 32
    a_lo = a & MASK32
    a_hi = (a >> 32) & MASK32
    ll = a_lo * m_lo  # each partial product is < 2**64: exact modulo 2**64
    lh = a_lo * m_hi
    hl = a_hi * m_lo
    hh = a_hi * m_hi
    # middle column: three 32-bit quantities, sum < 3 * 2**32, so no overflow and >> is logical
    mid = ((ll >> 32) & MASK32) + (lh & MASK32) + (hl & MASK32)
    hi = hh + ((lh >> 32) & MASK32) + ((hl >> 32) & MASK32) + (mid >> 32)
    lo = a * as_int64(m)
    return hi, lo


def philox_rounds(
    key: tuple[int, int], counter: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x64-10 of arbitrary counters (four int64 tensors of words 0..3) under one key."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(PHILOX_ROUNDS):
        # round r uses the key bumped r times by the Weyl increments (modulo 2**64)
        rk0 = as_int64(k0 + r * PHILOX_W0)
        rk1 = as_int64(k1 + r * PHILOX_W1)
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ rk0, lo1, hi0 ^ c3 ^ rk1, lo0
    return c0, c1, c2, c3


def philox_torch(
    key: tuple[int, int], start_block: int, n_blocks: int, *, device: Any = None
) -> torch.Tensor:
    """Blocks [start_block, start_block + n_blocks) as a flat int64 tensor of 4 * n_blocks words.

    Word 4*b + lane is lane `lane` of block start_block + b, as in numpy's `random_raw` order.
    Inputs are assumed validated (see `philox4x64`).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    c0 = torch.arange(start_block, start_block + n_blocks, dtype=torch.int64, device=device)
    zero = torch.zeros_like(c0)
    out = philox_rounds(key, (c0, zero, zero, zero))
    return torch.stack(out, dim=1).reshape(-1)
