"""Bit-exact comparison of checkpoint trees: the definition of "lossless" fzpack tests against."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch

from fzpack.tensor_bits import bits_view


def tree_differences(a: Any, b: Any, path: str = "", limit: int = 20, *, atol: float | None = None, rtol: float = 0.0) -> list[str]:
    """Every way ``b`` differs from ``a``: types, keys, key order, dtypes, shapes, bits.

    Args:
        a, b: the trees (``a`` the reference).
        path: prefix for the reported paths.
        limit: report at most this many differences.
        atol, rtol: when ``atol`` is given, floating tensors may differ by ``|a - b| <= atol +
            rtol * |a|`` elementwise (NaN must meet NaN); everything else must still be exact.
            This is how a lossy `.fzp` is checked against its documented error bound.

    Returns:
        Human-readable differences (at most ``limit``); empty when the trees are identical
        (bit for bit, or within the tolerance).
    """
    out: list[str] = []
    _diff(a, b, path or "/", out, limit, (atol, rtol))
    return out


def max_abs_difference(a: Any, b: Any) -> float:
    """Largest ``|a - b|`` over floating tensors at the same place in two same-shaped trees (0.0 if none).

    Example:
        >>> max_abs_difference({"w": torch.ones(2)}, {"w": torch.zeros(2)})
        1.0
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or not (a.is_floating_point() and b.is_floating_point()) or not a.numel():
            return 0.0
        d = (a.detach().cpu().double() - b.detach().cpu().double()).abs()
        d = d[~torch.isnan(d)]
        return float(d.max()) if d.numel() else 0.0
    if isinstance(a, dict) and isinstance(b, dict):
        return max((max_abs_difference(a[k], b[k]) for k in a if k in b), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return max((max_abs_difference(x, y) for x, y in zip(a, b)), default=0.0)
    return 0.0


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    return bool(((a - b).abs()[~nan] <= atol + rtol * a.abs()[~nan]).all())


def _diff(a: Any, b: Any, p: str, out: list[str], limit: int, tol: tuple[float | None, float]) -> None:
    if len(out) >= limit:
        return
    if type(a) is not type(b):
        out.append(f"{p}: type {type(a).__name__} != {type(b).__name__}")
        return
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            out.append(f"{p}: {a.dtype}{tuple(a.shape)} != {b.dtype}{tuple(b.shape)}")
        elif a.numel() and not torch.equal(bits_view(a.detach().cpu().contiguous()), bits_view(b.detach().cpu().contiguous())):
            if tol[0] is None or not a.is_floating_point():
                out.append(f"{p}: tensor bits differ")
            elif not _close(a, b, tol[0], tol[1]):
                out.append(f"{p}: differs by up to {max_abs_difference(a, b):.3g}, beyond the tolerance")
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
            _diff(a[k], b[k], f"{p.rstrip('/')}/{k}", out, limit, tol)
        return
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{p}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{p.rstrip('/')}/{i}", out, limit, tol)
        return
    if isinstance(a, float):
        if not (a == b and math.copysign(1, a) == math.copysign(1, b)) and not (math.isnan(a) and math.isnan(b)):
            out.append(f"{p}: {a!r} != {b!r}")
        return
    if a != b:
        out.append(f"{p}: {a!r} != {b!r}")
