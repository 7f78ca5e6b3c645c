"""Bit-exact comparison of checkpoint trees: the definition of "lossless" fzpack tests against."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch

from fzpack.tensor_bits import bits_view


def tree_differences(a: Any, b: Any, path: str = "", limit: int = 20) -> list[str]:
    """Every way ``b`` differs from ``a``: types, keys, key order, dtypes, shapes, bits.

    Returns:
        Human-readable differences (at most ``limit``); empty when the trees are bit-identical.
    """
    out: list[str] = []
    _diff(a, b, path or "/", out, limit)
    return out


def _diff(a: Any, b: Any, p: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if type(a) is not type(b):
        out.append(f"{p}: type {type(a).__name__} != {type(b).__name__}")
        return
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            out.append(f"{p}: {a.dtype}{tuple(a.shape)} != {b.dtype}{tuple(b.shape)}")
        elif a.numel() and not torch.equal(bits_view(a.detach().cpu().contiguous()), bits_view(b.detach().cpu().contiguous())):
            out.append(f"{p}: tensor bits differ")
        return
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            if set(a.keys()) != set(b.keys()):
                out.append(f"{p}: keys differ: {sorted(map(repr, set(a) ^ set(b)))[:5]}")
                return
            if isinstance(a, OrderedDict):
                out.append(f"{p}: key order differs")
        if getattr(a, "_metadata", None) != getattr(b, "_metadata", None):
            out.append(f"{p}: _metadata differs")
        for k in a:
            _diff(a[k], b[k], f"{p.rstrip('/')}/{k}", out, limit)
        return
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{p}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{p.rstrip('/')}/{i}", out, limit)
        return
    if isinstance(a, float):
        if not (a == b and math.copysign(1, a) == math.copysign(1, b)) and not (math.isnan(a) and math.isnan(b)):
            out.append(f"{p}: {a!r} != {b!r}")
        return
    if a != b:
        out.append(f"{p}: {a!r} != {b!r}")
