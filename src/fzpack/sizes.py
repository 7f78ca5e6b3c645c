"""Size accounting shared by compress, inspect and compare: what the bytes of a file are spent on."""

from __future__ import annotations

import math

import torch

from fzpack.container.layout import ALIAS, FROZEN, PLAIN, PREAMBLE_SIZE, ROLE_INDEX, ROLE_MASKS, Header

_NOT_PARAMS = ("running_mean", "running_var", "num_batches_tracked")


def dense_fp32_bytes(h: Header) -> int:
    """The dense fp32 size: every floating element at 4 bytes, other elements at their own size."""
    total = 0
    for t in h.tensors:
        if t.kind == ALIAS:
            continue
        size = 4 if t.dtype.is_floating_point else torch.empty((), dtype=t.dtype).element_size()
        total += t.numel * size
    return total


def breakdown(h: Header, header_body_bytes: int) -> dict[str, int]:
    """Bytes by purpose: header, mask, trained values (+ exceptions), other tensors, index."""
    out = {"header": PREAMBLE_SIZE + header_body_bytes, "mask": 0, "trained": 0, "other": 0, "index": 0}
    role_of = {}
    for t in h.tensors:
        if t.kind == FROZEN:
            role_of[t.stream] = "trained"
        elif t.kind == PLAIN:
            role_of.setdefault(t.stream, "other")
    for i, s in enumerate(h.streams):
        key = "mask" if s.role == ROLE_MASKS else "index" if s.role == ROLE_INDEX else role_of.get(i, "other")
        out[key] += s.stored_length
    return out


def binary_entropy_bits(n: int, k: int) -> float:
    """n * H(k/n): the per-tensor i.i.d. Bernoulli bound on coding a mask with k ones."""
    if n == 0 or k in (0, n):
        return 0.0
    p = k / n
    return -n * (p * math.log2(p) + (1 - p) * math.log2(1 - p))


def freeze_rates(h: Header) -> dict[str, float | int]:
    """q and q_beta of FreezeNet section 4 from the tensor table.

    q = 1 - K/|W| over frozen tensors; q_beta also counts the always-trained parameters B:
    plain floating tensors other than BatchNorm running statistics.
    """
    w = sum(t.numel for t in h.tensors if t.kind == FROZEN)
    k = sum(t.k for t in h.tensors if t.kind == FROZEN)
    b = sum(t.numel for t in h.tensors if t.kind == PLAIN and t.dtype.is_floating_point and not t.name.endswith(_NOT_PARAMS))
    q = 1 - k / w if w else 0.0
    qb = 1 - (k + b) / (w + b) if (w + b) else 0.0
    return {"frozen_weights": w, "trained_weights": k, "always_trained": b, "q": q, "q_beta": qb}
