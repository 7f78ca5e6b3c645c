"""Datasets: IDX (MNIST / Fashion-MNIST) reader and a deterministic synthetic stand-in."""

from __future__ import annotations

from fzpack.data.idx import (
    DATASET_STATS,
    DataError,
    DatasetNotFoundError,
    find_idx_files,
    load_idx_dataset,
    normalize,
    read_idx,
)
from fzpack.data.synthetic import make_synthetic

__all__ = [
    "DATASET_STATS",
    "DataError",
    "DatasetNotFoundError",
    "find_idx_files",
    "load_idx_dataset",
    "make_synthetic",
    "normalize",
    "read_idx",
]
