"""Datasets: registry, IDX (MNIST / Fashion-MNIST) and CIFAR binary readers, a deterministic
synthetic stand-in, train/validation splits and a seeded, shardable batch iterator."""

from __future__ import annotations

from fzpack.data.cifar import CIFAR_STATS, find_cifar_files, load_cifar
from fzpack.data.datasets import DatasetInfo, dataset_info, list_datasets, load_dataset, train_val_split
from fzpack.data.idx import (
    DATASET_STATS,
    DataError,
    DatasetNotFoundError,
    find_idx_files,
    load_idx_dataset,
    normalize,
    read_idx,
)
from fzpack.data.loader import MAX_TRANSLATION, Batches, epoch_seed
from fzpack.data.synthetic import make_synthetic

__all__ = [
    "Batches",
    "CIFAR_STATS",
    "DATASET_STATS",
    "DataError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "MAX_TRANSLATION",
    "dataset_info",
    "epoch_seed",
    "find_cifar_files",
    "find_idx_files",
    "list_datasets",
    "load_cifar",
    "load_dataset",
    "load_idx_dataset",
    "make_synthetic",
    "normalize",
    "read_idx",
    "train_val_split",
]
