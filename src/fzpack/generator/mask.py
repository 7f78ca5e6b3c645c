"""random_mask and random_mask_rows: k positions drawn uniformly from the stream (seed, MASK, name).

Element i gets the 64-bit key r[i] (the i-th uint64 Philox output: block i // 4, lane i % 4).
random_mask chooses the k smallest keys, ties broken by lower index, i.e. the first k of the
indices sorted by (r[i], i). Because the keys are i.i.d. uniform this is a uniformly random
k-subset (up to the negligible bias of ties), and it is a pure function of (seed, name, n, k).
random_mask_rows (spec 8.1, DCTpS "equal per filter") applies the same rule within each row
(view axis 0) to that row's share of k, using the same keys.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from fzpack.errors import FzpackError
from fzpack.generator.constants import MASK
from fzpack.generator.philox import check_int, philox_numpy, stream_key
from fzpack.generator import compiled
from fzpack.generator.regen import resolve_backend, run_split, split_range
from fzpack.generator.schemes import check_shape
from fzpack.generator.torch_philox import philox_torch

#: XOR with the sign bit maps unsigned 64-bit order onto torch's signed int64 order.
_SIGN64 = -(1 << 63)


def mask_keys(key: tuple[int, int], n: int) -> np.ndarray:
    """The keys r[0 .. n-1] of a MASK stream (64-bit words), by the compiled kernel or numpy's Philox.

    Args:
        key: the stream's Philox key.
        n: number of keys.

    Returns:
        uint64 array of length n (a view of whole blocks).

    Example:
        >>> int(mask_keys(stream_key(0, MASK, "w"), 3).size)
        3
    """
    blocks = -(-n // 4)
    kc = compiled.compiled_for(n)
    if kc is None:
        return philox_numpy(key, 0, blocks)[:n]
    out = np.empty(4 * blocks, dtype=np.uint64)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])

    def work(s: int, count: int, dst: np.ndarray) -> None:
        kc.philox_blocks(k0, k1, np.uint64(s // 4), dst)

    run_split(split_range(0, 4 * blocks, 4), 0, out, work)
    return out[:n]


def _candidate_bound(count: int, width: int) -> int:
    """A key bound below which, for i.i.d. uniform 64-bit keys, a row of `width` holds its `count`
    smallest keys with overwhelming probability (mean count + 8 sigma + 32 expected below it).

    Only speed depends on it: a row with fewer candidates than `count` is selected exactly."""
    want = count + 8.0 * math.sqrt(count) + 32.0
    return (1 << 64) - 1 if want >= width else min(int(want / width * 2.0**64), (1 << 64) - 1)


def select_smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """Boolean array marking the k smallest entries of `keys` (uint64), ties to the lower index.

    The keys at or below `_candidate_bound` are the candidates (one pass over the keys); when there
    are at least k of them they hold the k smallest, which a stable sort of the candidates alone
    finds. Otherwise (never for random keys, always correct) the whole array is partitioned.
    """
    n = keys.size
    chosen = np.zeros(n, dtype=bool)
    if k == 0:
        return chosen
    if k == n:
        chosen[:] = True
        return chosen
    cand = np.flatnonzero(keys <= np.uint64(_candidate_bound(k, n)))
    if cand.size >= k:  # they include the k smallest; a stable sort keeps index order among ties
        chosen[cand[np.argsort(keys[cand], kind="stable")[:k]]] = True
        return chosen
    return _select_exact(keys, k, chosen)


def select_smallest_rows(keys: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Per row of the 2-D uint64 `keys`, mark its counts[r] smallest entries (ties to the lower index).

    Candidates as in `select_smallest`, per row; one stable sort orders them by (row, key, index).
    Rows with too few candidates are selected exactly.
    """
    rows, width = keys.shape
    chosen = np.zeros((rows, width), dtype=bool)
    need = np.asarray(counts, dtype=np.int64)
    bounds = np.array([_candidate_bound(int(c), width) for c in need], dtype=np.uint64)
    cand = np.flatnonzero(keys <= bounds[:, None])  # row-major: grouped by row, in index order
    row = cand // width
    have = np.bincount(row, minlength=rows)
    order = np.lexsort((keys.reshape(-1)[cand], row))  # by row, then key; stable, so ties by index
    starts = np.concatenate([[0], np.cumsum(have)[:-1]])
    rank = np.arange(cand.size) - starts[row[order]]
    ok = have >= need
    take = order[(rank < need[row[order]]) & ok[row[order]]]
    chosen.reshape(-1)[cand[take]] = True
    for r in np.flatnonzero(~ok):
        _select_exact(keys[r], int(need[r]), chosen[r])
    return chosen


def _select_exact(keys: np.ndarray, k: int, chosen: np.ndarray) -> np.ndarray:
    """Mark in `chosen` the k smallest keys (0 <= k <= keys.size) by a full partition; returns `chosen`."""
    if k == 0:
        return chosen
    if k == keys.size:
        chosen[:] = True
        return chosen
    threshold = np.partition(keys, k - 1)[k - 1]  # the k-th smallest key
    below = keys < threshold
    chosen |= below
    need = k - int(np.count_nonzero(below))  # >= 1 entries equal to the threshold, lowest index first
    ties = np.flatnonzero(keys == threshold)[:need]
    chosen[ties] = True
    return chosen


def random_mask(
    seed: int, name: str, shape: Sequence[int] | torch.Size, k: int, *, device: str | torch.device = "cpu",
    backend: str | None = None,
) -> torch.Tensor:
    """A boolean tensor with exactly k True entries at seed-determined, uniformly random positions.

    Args:
        seed: user seed in [0, 2**32).
        name: names the MASK stream (e.g. the weight's state_dict key).
        shape: mask shape; positions are row-major flat indices.
        k: number of True entries, 0 <= k <= prod(shape).
        device: output device.
        backend: None (numpy on a CPU device, torch elsewhere: a GPU target draws its keys and
            selects on the device), "numpy" or "torch"; all give the same bits.

    Returns:
        torch.bool tensor of `shape`.

    Example:
        >>> int(random_mask(0, "fc.weight", (30, 40), 12).sum())
        12
    """
    dims = check_shape(shape)
    n = math.prod(dims)
    k = check_int(k, f"k for shape {dims}", 0, n)
    dev, backend = resolve_backend(device, backend, f"mask {name!r}")
    if backend == "torch":  # spec 8.1: one row is exactly spec 8's rule
        return random_mask_rows(seed, name, (n,), k, device=dev, backend="torch").reshape(dims)
    key = stream_key(seed, MASK, name)
    keys = mask_keys(key, n)
    chosen = select_smallest(keys, k)
    try:
        return torch.from_numpy(chosen).reshape(dims).to(dev)
    except (RuntimeError, AssertionError, TypeError) as exc:  # unknown or unavailable device
        raise FzpackError(f"cannot place mask {name!r} on device {device!r}: {exc}") from None


def row_counts(rows: int, k: int) -> list[int]:
    """Entries per row of `random_mask_rows`: k spread as evenly as possible, extras to the first rows.

    With 0 <= k <= rows * m (m = row length), k_r <= m: if k // rows = m then k = rows * m,
    k % rows = 0 and k_r = m; otherwise k // rows <= m - 1 and k_r <= m.

    Args:
        rows: number of rows R >= 1.
        k: total entries, k >= 0.

    Returns:
        [k_0, ..., k_{R-1}] with k_r = k // R + (1 if r < k % R else 0).

    Example:
        >>> row_counts(4, 10)
        [3, 3, 2, 2]
    """
    q, extra = divmod(k, rows)
    return [q + (1 if r < extra else 0) for r in range(rows)]


def random_mask_rows(
    seed: int,
    name: str,
    shape: Sequence[int] | torch.Size,
    k: int,
    *,
    device: str | torch.device = "cpu",
    backend: str | None = None,
) -> torch.Tensor:
    """A boolean tensor with k True entries spread equally over the rows (shape[0]), random within each.

    Row r (flat positions r*m ... r*m + m - 1, m = numel / shape[0]) gets k // R + (1 if r < k % R)
    entries, R = shape[0]: the positions with the smallest keys r[i] of the stream (seed, MASK, name)
    within the row, ties to the lower index (spec 8.1; DCTpS "equal per filter"). The keys are those
    of `random_mask`, so for shapes of 0 or 1 dimensions (one row) the two are equal.

    Args:
        seed: user seed in [0, 2**32).
        name: names the MASK stream (e.g. the weight's state_dict key).
        shape: mask shape; rows are indexed by the first dimension.
        k: number of True entries, 0 <= k <= prod(shape).
        device: output device.
        backend: None (numpy on a CPU device, torch elsewhere), "numpy" (select on the CPU, then
            move) or "torch" (torch integer ops and a stable sort on `device`); all give the same bits.

    Returns:
        torch.bool tensor of `shape`.

    Example:
        >>> random_mask_rows(0, "conv.weight", (4, 3, 3, 3), 10).reshape(4, -1).sum(1).tolist()
        [3, 3, 2, 2]
    """
    dims = check_shape(shape)
    n = math.prod(dims)
    k = check_int(k, f"k for shape {dims}", 0, n)
    key = stream_key(seed, MASK, name)
    rows = dims[0] if len(dims) >= 2 else 1
    width = n // rows if rows else 0
    dev, backend = resolve_backend(device, backend, f"mask {name!r}")
    try:
        if n == 0:
            return torch.zeros(dims, dtype=torch.bool, device=dev)
        counts = row_counts(rows, k)
        if backend == "numpy":
            chosen = select_smallest_rows(mask_keys(key, n).reshape(rows, width), counts)
            return torch.from_numpy(chosen).reshape(dims).to(dev)
        keys = (philox_torch(key, 0, -(-n // 4), device=dev)[:n] ^ _SIGN64).reshape(rows, width)
        order = torch.sort(keys, dim=1, stable=True).indices
        ranks = torch.arange(width, device=dev)[None, :]
        take = ranks < torch.tensor(counts, dtype=torch.int64, device=dev)[:, None]
        chosen_t = torch.zeros((rows, width), dtype=torch.bool, device=dev).scatter_(1, order, take)
        return chosen_t.reshape(dims)
    except (RuntimeError, AssertionError, TypeError) as exc:  # unknown or unavailable device
        raise FzpackError(f"cannot place mask {name!r} on device {device!r}: {exc}") from None
