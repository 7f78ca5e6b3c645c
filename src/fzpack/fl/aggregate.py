"""FedAvg over trained values, with one exactly defined elementwise rule (formats/fl-update-v1.md section 7).

For weights ``w_i`` (example counts, integers >= 0 with ``W = sum w_i > 0``) and the clients'
values ``v_i`` of one entry, elementwise:

* floating entries: in IEEE binary64, ``acc = w_0 * v_0``, then ``acc = acc + w_i * v_i`` for
  ``i = 1, 2, ...`` in the given order (each product and sum rounded on its own, no fused
  multiply-add), then ``acc / W``, then rounded to the entry's dtype (float32: one round-to-
  nearest-even; float16 / bfloat16: to float32, then to the dtype; float64: as is);
* integer and boolean entries (``num_batches_tracked``): the exact rational mean
  ``sum w_i v_i / W`` rounded to the nearest integer, ties to even.

The rule is elementwise, so averaging dense state dicts (:func:`dense_fedavg`) and then reading
off the trained entries gives the same bits as averaging only the trained values
(:func:`fedavg`): the entries a base fixes are equal in every client and average to themselves
(for float32: ``w_i * v`` is exact in binary64 while ``w_i < 2**29``, and the rounding error of
the sum, a few binary64 ulps, is far inside half a float32 ulp).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fzpack.errors import FzpackError
from fzpack.fl.payload import Update

__all__ = ["average", "dense_fedavg", "fedavg"]


def _weights(weights: Sequence[int], n: int) -> list[int]:
    ws = list(weights)
    if len(ws) != n:
        raise FzpackError(f"{len(ws)} weights for {n} clients")
    for w in ws:
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise FzpackError(f"FedAvg weights are example counts (integers >= 0), got {w!r}")
    if not sum(ws):
        raise FzpackError("FedAvg weights add up to 0: every client reported 0 examples")
    return ws


def average(tensors: Sequence[torch.Tensor], weights: Sequence[int]) -> torch.Tensor:
    """The weighted mean of same-shaped, same-dtype tensors by the module's rule (CPU result).

    Args:
        tensors: one tensor per client.
        weights: example counts, integers >= 0, not all 0.

    Returns:
        A new tensor of the inputs' dtype and shape.

    Example:
        >>> average([torch.tensor([1.0]), torch.tensor([4.0])], [2, 1])
        tensor([2.])
    """
    if not tensors:
        raise FzpackError("nothing to average")
    ws = _weights(weights, len(tensors))
    first = tensors[0]
    for t in tensors:
        if t.dtype != first.dtype or t.shape != first.shape:
            raise FzpackError(f"cannot average {t.dtype} {tuple(t.shape)} with {first.dtype} {tuple(first.shape)}")
    ts = [t.detach().to("cpu") for t in tensors]
    total = sum(ws)
    if first.is_floating_point():
        # Separate multiply and add (never add_(x, alpha=w), which may fuse) keep every rounding defined.
        acc = torch.mul(ts[0].to(torch.float64), float(ws[0]))
        for w, t in zip(ws[1:], ts[1:]):
            acc = torch.add(acc, torch.mul(t.to(torch.float64), float(w)))
        mean = torch.div(acc, float(total))
        if first.dtype == torch.float64:
            return mean
        return mean.to(torch.float32).to(first.dtype)
    if first.is_complex():
        raise FzpackError("FedAvg of complex entries is not defined here")
    return _integer_mean(ts, ws, total)


def _integer_mean(ts: list[torch.Tensor], ws: list[int], total: int) -> torch.Tensor:
    """Exact rational mean rounded half to even, in Python integers (no overflow at any size)."""
    dtype, shape = ts[0].dtype, ts[0].shape
    cols = [t.reshape(-1).to(torch.int64 if dtype == torch.bool else dtype).tolist() for t in ts]
    out = []
    for vals in zip(*cols):
        q, r = divmod(sum(w * int(v) for w, v in zip(ws, vals)), total)
        if 2 * r > total or (2 * r == total and q % 2):
            q += 1
        out.append(q)
    return torch.tensor(out, dtype=torch.int64).to(dtype).reshape(shape)


def fedavg(updates: Sequence[Update | Sequence[torch.Tensor]], weights: Sequence[int] | None = None) -> list[torch.Tensor]:
    """Federated averaging of trained values, weighted by example counts.

    Args:
        updates: decoded updates of one base (or value lists in one layout, then ``weights`` is required).
        weights: override the updates' ``examples`` (integers >= 0, not all 0).

    Returns:
        The averaged values in layout order: pass them to ``encode_update`` for the next round's
        downlink, or to ``apply_update(model, values, base)``.

    Example:
        >>> global_values = fedavg([decode_update(b, base) for b in payloads])
        >>> downlink = encode_update(global_values, base, round=r + 1)
    """
    if not updates:
        raise FzpackError("fedavg needs at least one update")
    if weights is None:
        if not all(isinstance(u, Update) for u in updates):
            raise FzpackError("fedavg of plain value lists needs weights=")
        weights = [u.examples for u in updates]  # type: ignore[union-attr]
    bases = {u.base.fingerprint for u in updates if isinstance(u, Update)}
    if len(bases) > 1:
        raise FzpackError("fedavg over updates of different bases")
    lists = [list(u.values) if isinstance(u, Update) else list(u) for u in updates]
    if len({len(v) for v in lists}) != 1:
        raise FzpackError("fedavg over value lists of different lengths")
    ws = _weights(weights, len(lists))
    return [average(column, ws) for column in zip(*lists)]


def dense_fedavg(state_dicts: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[int]) -> dict[str, torch.Tensor]:
    """Dense FedAvg of whole state dicts by the same elementwise rule: the reference for :func:`fedavg`.

    Args:
        state_dicts: one per client, same keys, dtypes and shapes.
        weights: example counts.

    Returns:
        ``{key: averaged tensor}`` in the first state dict's key order.

    Example:
        >>> avg = dense_fedavg([checkpoint_of(m)["state_dict"] for m in clients], [600, 400])
    """
    if not state_dicts:
        raise FzpackError("dense_fedavg needs at least one state dict")
    keys = list(state_dicts[0])
    for sd in state_dicts[1:]:
        if list(sd) != keys:
            raise FzpackError("dense_fedavg over state dicts with different keys")
    ws = _weights(weights, len(state_dicts))
    return {k: average([sd[k] for sd in state_dicts], ws) for k in keys}
