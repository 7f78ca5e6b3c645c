"""random_mask: exactly k positions drawn uniformly from the stream (seed, MASK, name).

Element i gets the 64-bit key r[i] (the i-th uint64 Philox output: block i // 4, lane i % 4).
The chosen positions are the k smallest keys, ties broken by lower index, i.e. the first k of
the indices sorted by (r[i], i). Because the keys are i.i.d. uniform this is a uniformly random
k-subset (up to the negligible bias of ties), and it is a pure function of (seed, name, n, k).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from fzpack.errors import FzpackError
from fzpack.generator.constants import MASK
from fzpack.generator.philox import check_int, philox_numpy, stream_key
from fzpack.generator.schemes import check_shape


def select_smallest(keys: np.ndarray, k: int) -> np.ndarray:
    """Boolean array marking the k smallest entries of `keys` (uint64), ties to the lower index."""
    n = keys.size
    chosen = np.zeros(n, dtype=bool)
    if k == 0:
        return chosen
    if k == n:
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
    seed: int, name: str, shape: Sequence[int] | torch.Size, k: int, *, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """A boolean tensor with exactly k True entries at seed-determined, uniformly random positions.

    Args:
        seed: user seed in [0, 2**32).
        name: names the MASK stream (e.g. the weight's state_dict key).
        shape: mask shape; positions are row-major flat indices.
        k: number of True entries, 0 <= k <= prod(shape).
        device: output device (the selection is computed on the CPU, so it is device-independent).

    Returns:
        torch.bool tensor of `shape`.

    Example:
        >>> int(random_mask(0, "fc.weight", (30, 40), 12).sum())
        12
    """
    dims = check_shape(shape)
    n = math.prod(dims)
    k = check_int(k, f"k for shape {dims}", 0, n)
    key = stream_key(seed, MASK, name)
    keys = philox_numpy(key, 0, -(-n // 4))[:n]
    chosen = select_smallest(keys, k)
    try:
        return torch.from_numpy(chosen).reshape(dims).to(device)
    except (RuntimeError, AssertionError, TypeError) as exc:  # unknown or unavailable device
        raise FzpackError(f"cannot place mask {name!r} on device {device!r}: {exc}") from None
