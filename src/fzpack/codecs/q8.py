"""The q8 value codec (stream codec 18, formats/fzpack-v1.md §3.2.2): 8-bit scalar quantisation.

A stream coded with q8 is one *segment*: its ``n = raw_length / itemsize`` values are replaced by
indices into a table of ``K <= 256`` float32 levels, and decode is ``levels[index]`` converted to
the stream's dtype. The levels are either

* a **uniform grid** ``levels[i] = f32(lo + f32(i * step))`` (8 bytes of parameters; every value
  within ``step / 2`` of its level, up to float32 rounding of the grid), or
* a **codebook** of K float32 centroids found by 1-D k-means (Lloyd iterations from
  deterministic initialisations - quantiles, and evenly spaced levels - no random numbers).

The encoder's quality contract is the 256-level uniform grid over ``[min, max]``: it keeps the
smallest payload among the grids whose mean squared error is no worse than that one's. (Picking
the lowest MSE regardless of size would put a 1 KiB codebook on a 300-value tensor and make q8
bigger than the lossless file.) The writer puts each frozen tensor in its own q8 stream, so the
quantisation is per tensor.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch

from fzpack.codecs.q8_index import decode_indices, encode_indices
from fzpack.container.bytes_io import Reader
from fzpack.errors import CodecError, FormatError

GRID_UNIFORM, GRID_CODEBOOK = 0, 1
GRID_NAMES = {GRID_UNIFORM: "uniform", GRID_CODEBOOK: "k-means"}
MAX_LEVELS = 256
_KMEANS_LEVELS = (256, 128, 64, 32, 16, 8, 4, 2)
_LLOYD_ITERATIONS = 40


@dataclass
class Grid:
    """One candidate quantiser: its kind, float32 levels (ascending) and uniform parameters."""

    kind: int
    levels: np.ndarray  # float32, ascending
    lo: float = 0.0
    step: float = 0.0

    def header(self) -> bytes:
        """``u8 kind``, ``u8 K - 1``, then ``f32 lo, f32 step`` or ``K x f32`` levels."""
        head = bytes([self.kind, len(self.levels) - 1])
        if self.kind == GRID_UNIFORM:
            return head + struct.pack("<ff", self.lo, self.step)
        return head + self.levels.astype("<f4").tobytes()


def uniform_levels(lo: float, step: float, k: int) -> np.ndarray:
    """``f32(lo + f32(i * step))`` for ``i < k``: two IEEE binary32 operations, no fused multiply-add."""
    with np.errstate(over="ignore", invalid="ignore"):  # callers reject a non-finite grid; no warnings
        prod = np.arange(k, dtype=np.float32) * np.float32(step)
        return (np.float32(lo) + prod).astype(np.float32)


def nearest(levels: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index of the nearest level (ascending ``levels``) for each value; exact midpoints in float64."""
    if len(levels) == 1:
        return np.zeros(v.shape, dtype=np.int64)
    lv = levels.astype(np.float64)
    return np.searchsorted((lv[:-1] + lv[1:]) / 2, v, side="left").astype(np.int64)


def uniform_grid(v: np.ndarray) -> Grid:
    """256 levels from min to max (one level when all values are equal)."""
    lo, hi = float(v.min()), float(v.max())
    lo32 = float(np.float32(lo))
    if lo32 > lo:  # float32 rounding went up: step down one ulp so the grid starts at or below min
        lo32 = float(np.nextafter(np.float32(lo32), np.float32(-np.inf)))
    if hi == lo:
        return Grid(GRID_UNIFORM, np.array([lo32], dtype=np.float32), lo32, 0.0)
    step = float(np.float32((hi - lo32) / (MAX_LEVELS - 1)))
    return Grid(GRID_UNIFORM, uniform_levels(lo32, step, MAX_LEVELS), lo32, step)


def _lloyd(sorted_v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, float]:
    """Lloyd iterations from ascending centroids ``c``; returns the used centroids and their MSE.

    Each iteration assigns every value to its nearest centroid (a binary search over midpoints)
    and moves each centroid to the mean of its values; both steps can only lower the MSE. An
    empty cluster keeps its centroid until the end, when unused centroids are dropped.
    """
    assign = nearest(c, sorted_v)
    for _ in range(_LLOYD_ITERATIONS):
        sums = np.bincount(assign, weights=sorted_v, minlength=len(c))
        counts = np.bincount(assign, minlength=len(c))
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)  # ordered clusters keep ordered means
        new = nearest(c, sorted_v)
        if np.array_equal(new, assign):
            break
        assign = new
    c = c[np.bincount(assign, minlength=len(c)) > 0]
    err = c[nearest(c, sorted_v)] - sorted_v
    return c, float(np.mean(err * err))


def kmeans_grid(sorted_v: np.ndarray, k: int) -> Grid:
    """1-D k-means with at most ``k`` centroids, deterministic (no random numbers).

    Two initialisations, the better result kept: the quantiles ``sorted_v[(j + 0.5) * n / k]``
    (dense where the data are), and ``k`` evenly spaced levels over ``[min, max]``, from which
    Lloyd can only improve on the uniform grid of the same size (quantile starts get stuck
    with coarse levels in the tails).
    """
    n = len(sorted_v)
    starts = [np.unique(sorted_v[((np.arange(k) + 0.5) * n / k).astype(np.int64)]),
              np.unique(np.linspace(sorted_v[0], sorted_v[-1], k))]
    c = min((_lloyd(sorted_v, s) for s in starts), key=lambda r: r[1])[0]
    return Grid(GRID_CODEBOOK, np.unique(c.astype(np.float32)))


def _candidates(v: np.ndarray) -> list[Grid]:
    """The uniform grid first (when float32 can hold its step: not for ranges near 3e38), then codebooks."""
    uniform = uniform_grid(v)
    grids = [uniform] if np.isfinite(uniform.step) and np.isfinite(uniform.levels).all() else []
    sorted_v = np.sort(v)
    distinct = np.unique(sorted_v.astype(np.float32))
    if len(distinct) <= MAX_LEVELS:  # every value is a level: exact (up to the dtype cast)
        grids.append(Grid(GRID_CODEBOOK, distinct))
    for k in _KMEANS_LEVELS:
        if k < len(distinct):
            grids.append(kmeans_grid(sorted_v, k))
    return grids


def _dequantize(levels: np.ndarray, idx: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``levels[idx]`` converted to ``dtype`` (round-to-nearest-even), returned as float64."""
    out = torch.from_numpy(levels[idx]).to(dtype)
    return out.to(torch.float64).numpy()


def encode_q8(values: np.ndarray, dtype: torch.dtype, dtype_id: int) -> bytes:
    """Quantise finite ``values`` (float64 view of a ``dtype`` tensor) into a q8 payload.

    Args:
        values: the stream's values, all finite, at least one.
        dtype: the stream's dtype (what the decoder produces).
        dtype_id: its fzpack-v1 dtype id, the payload's first byte.

    Returns:
        ``u8 dtype`` + grid header + ``u8 index coder`` + index bytes.

    Example:
        >>> payload = encode_q8(np.array([0.1, -0.2, 0.3]), torch.float32, 1)
    """
    v = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(v).max()) or 1.0  # MSE relative to max|v|: no overflow near float32's range
    scored = []
    for grid in _candidates(v):
        idx = nearest(grid.levels, v)
        err = (_dequantize(grid.levels, idx, dtype) - v) / scale
        scored.append((grid, idx, float(np.mean(err * err))))
    # The uniform 256-level grid is the quality contract; without one (a range float32 cannot
    # step through) the most accurate candidate is.
    target = scored[0][2] if scored[0][0].kind == GRID_UNIFORM else min(m for _, _, m in scored)
    best: tuple[int, float, bytes] | None = None
    for grid, idx, mse in scored:
        if mse > target:
            continue
        payload = bytes([dtype_id]) + grid.header() + encode_indices(idx, len(grid.levels))
        if best is None or (len(payload), mse) < best[:2]:
            best = (len(payload), mse, payload)
    assert best is not None
    return best[2]


def parse_grid(r: Reader) -> Grid:
    """Read and validate the grid header: K in 1..256, finite levels, ascending."""
    kind = r.u8()
    k = r.u8() + 1
    if kind == GRID_UNIFORM:
        lo, step = r.f32(), r.f32()
        if not (np.isfinite(lo) and np.isfinite(step)) or step < 0 or (k == 1 and step != 0):
            raise CodecError(f"q8: invalid uniform grid (lo {lo}, step {step}, {k} levels)")
        levels = uniform_levels(lo, step, k)
        grid = Grid(GRID_UNIFORM, levels, lo, step)
    elif kind == GRID_CODEBOOK:
        levels = np.frombuffer(r.raw(4 * k), dtype="<f4").astype(np.float32)
        if k > 1 and not (levels[1:] > levels[:-1]).all():
            raise CodecError("q8: codebook levels must be strictly increasing")
        grid = Grid(GRID_CODEBOOK, levels)
    else:
        raise CodecError(f"q8: unknown grid kind {kind}")
    if not np.isfinite(levels).all():
        raise CodecError("q8: a level is not a finite float32")
    return grid


def decode_q8(stored: bytes, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Decode a q8 payload (after its dtype byte) into ``n`` values of ``dtype``.

    Raises:
        CodecError: on any inconsistency (bad grid, wrong index count, trailing or missing bytes,
            a level that is not finite in ``dtype``).
    """
    r = Reader(stored, "q8 payload")
    try:
        grid = parse_grid(r)
        rest = r.raw(r.remaining)
    except CodecError:
        raise
    except FormatError as e:
        raise CodecError(str(e)) from e
    idx = decode_indices(rest, n, len(grid.levels))
    table = torch.from_numpy(grid.levels.copy()).to(dtype)
    if not torch.isfinite(table).all():
        raise CodecError(f"q8: a level overflows {str(dtype).removeprefix('torch.')}")
    return table[torch.from_numpy(idx)]


def describe_grid(stored: bytes) -> dict:
    """Grid kind, levels and (uniform) step of a q8 payload after its dtype byte; reads no indices."""
    try:
        grid = parse_grid(Reader(stored, "q8 payload"))
    except FormatError as e:
        return {"error": str(e)}
    out = {"grid": GRID_NAMES[grid.kind], "levels": len(grid.levels)}
    if grid.kind == GRID_UNIFORM:
        out.update(step=grid.step, max_abs_error_bound=grid.step / 2)
    return out
