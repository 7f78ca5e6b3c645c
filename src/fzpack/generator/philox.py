"""Philox4x64-10 block function and per-tensor stream keys (generator v1, spec sections 2-3).

Block index i of a stream is the Philox4x64-10 permutation of the 256-bit counter (i, 0, 0, 0)
(word 0 least significant) under the stream's 128-bit key. Two implementations exist and are
tested to agree bit for bit: numpy's C `np.random.Philox` (CPU fast path) and pure torch integer
ops (`torch_philox.py`, any device).
"""

from __future__ import annotations

import hashlib
import operator
import threading
from typing import Any

import numpy as np

from fzpack.errors import FzpackError
from fzpack.generator.constants import MASK64, PURPOSES, SEED_MAX

#: Block indices must stay below this: torch holds them in int64, and no tensor comes close.
MAX_BLOCK = 1 << 62


def check_int(value: Any, what: str, low: int, high: int) -> int:
    """Return ``value`` as an int in [low, high] (bools refused) or raise FzpackError."""
    if not isinstance(value, bool):
        try:
            v = operator.index(value)
        except TypeError:
            v = None
        if v is not None and low <= v <= high:
            return v
    raise FzpackError(f"{what} must be an integer in [{low}, {high}], got {value!r}")


def check_seed(seed: Any) -> int:
    """Return `seed` as an int in [0, 2**32) or raise FzpackError."""
    return check_int(seed, "seed", 0, SEED_MAX)


def stream_key(seed: int, purpose: int, name: str) -> tuple[int, int]:
    """The 128-bit Philox key of the stream (seed, purpose, name).

    Args:
        seed: user seed, an integer in [0, 2**32).
        purpose: 1 (INIT), 2 (MASK) or 3 (BANK).
        name: tensor or bank name; its UTF-8 bytes are hashed with SHA-256.

    Returns:
        (k0, k1): k0 = seed | purpose << 32, k1 = first 8 bytes of SHA-256(name) as little-endian uint64.

    Example:
        >>> stream_key(0, 1, "fc.weight")[0] == 1 << 32
        True
    """
    seed = check_seed(seed)
    if isinstance(purpose, bool) or not isinstance(purpose, int) or purpose not in PURPOSES.values():
        raise FzpackError(f"purpose must be one of {sorted(PURPOSES.values())}, got {purpose!r}")
    if not isinstance(name, str):
        raise FzpackError(f"stream name must be a str, got {type(name).__name__}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FzpackError(f"stream name {name!r} is not valid UTF-8 text") from None
    k1 = int.from_bytes(hashlib.sha256(encoded).digest()[:8], "little")
    return seed | (purpose << 32), k1


def check_key(key: Any) -> tuple[int, int]:
    """Validate a (k0, k1) key of two uint64 values."""
    try:
        k0, k1 = (operator.index(k) for k in key)
    except (TypeError, ValueError):
        raise FzpackError(f"a Philox key is two unsigned 64-bit integers, got {key!r}") from None
    if not (0 <= k0 <= MASK64 and 0 <= k1 <= MASK64):
        raise FzpackError(f"a Philox key is two unsigned 64-bit integers, got {key!r}")
    return k0, k1


def check_blocks(start_block: Any, n_blocks: Any) -> tuple[int, int]:
    """Validate a block range [start_block, start_block + n_blocks)."""
    try:
        start, n = operator.index(start_block), operator.index(n_blocks)
    except TypeError:
        raise FzpackError("start_block and n_blocks must be integers") from None
    if start < 0 or n < 0 or start + n > MAX_BLOCK:
        raise FzpackError(f"block range [{start}, {start + n}) is outside [0, 2**62)")
    return start, n


_LOCAL = threading.local()
_ALL_ONES = np.full(4, MASK64, dtype=np.uint64)


def _bit_generator() -> np.random.Philox:
    """This thread's reusable numpy Philox (constructing one costs ~14 us: it draws OS entropy)."""
    gen = getattr(_LOCAL, "gen", None)
    if gen is None:
        gen = np.random.Philox(key=np.zeros(2, dtype=np.uint64))
        _LOCAL.gen = gen
    return gen


def philox_numpy(key: tuple[int, int], start_block: int, n_blocks: int) -> np.ndarray:
    """Blocks [start_block, start_block + n_blocks) as a flat uint64 array of 4 * n_blocks words.

    numpy's Philox increments its 256-bit counter *before* computing each block, so the counter
    is set to start_block - 1 (mod 2**256: all ones for block 0) to make the first block start_block.
    The state dict (counter, key, empty buffer) is numpy's documented Philox state format.
    Inputs are assumed validated (internal hot path).
    """
    if n_blocks == 0:
        return np.empty(0, dtype=np.uint64)
    counter = _ALL_ONES if start_block == 0 else np.array([start_block - 1, 0, 0, 0], dtype=np.uint64)
    key_arr = np.array(key, dtype=np.uint64)
    gen = _bit_generator()
    try:
        gen.state = {
            "bit_generator": "Philox",
            "state": {"counter": counter, "key": key_arr},
            "buffer": np.zeros(4, dtype=np.uint64),
            "buffer_pos": 4,  # buffer empty: the next output is lane 0 of a fresh block
            "has_uint32": 0,
            "uinteger": 0,
        }
    except (TypeError, ValueError, KeyError):  # a numpy with another state layout: slower but sure
        gen = np.random.Philox(key=key_arr, counter=counter)
    return gen.random_raw(4 * n_blocks)


def philox4x64(
    key: tuple[int, int],
    start_block: int,
    n_blocks: int,
    *,
    backend: str = "numpy",
    device: Any = None,
) -> Any:
    """Raw Philox4x64-10 output of blocks [start_block, start_block + n_blocks).

    Args:
        key: (k0, k1), two unsigned 64-bit integers (see `stream_key`).
        start_block: index of the first block; block i encrypts the counter (i, 0, 0, 0).
        n_blocks: number of blocks.
        backend: "numpy" (C implementation, CPU) or "torch" (integer tensor ops, any device).
        device: torch device for the "torch" backend (default CPU); ignored by "numpy".

    Returns:
        numpy: uint64 array of shape (n_blocks, 4). torch: int64 tensor of shape (n_blocks, 4)
        holding the same 64-bit patterns (values >= 2**63 appear negative).

    Example:
        >>> hex(int(philox4x64((0, 0), 0, 1)[0, 0]))
        '0x16554d9eca36314c'
    """
    key = check_key(key)
    start, n = check_blocks(start_block, n_blocks)
    if backend == "numpy":
        return philox_numpy(key, start, n).reshape(n, 4)
    if backend == "torch":
        from fzpack.generator.torch_philox import philox_torch

        return philox_torch(key, start, n, device=device).reshape(n, 4)
    raise FzpackError(f"unknown Philox backend {backend!r}; use 'numpy' or 'torch'")
