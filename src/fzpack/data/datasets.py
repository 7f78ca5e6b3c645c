"""Dataset registry: the one place that knows every data set fzpack trains on.

Each entry records what a trainer needs before touching any file: classes, input shape,
normalisation statistics, and the paper's training setup (FreezeNet supplementary S1.1: batch
size 100 for MNIST-like data, 128 for CIFAR; random flips and 4-pixel translations for CIFAR
only). `load_dataset` dispatches to the IDX reader, the CIFAR binary reader or the synthetic
generator, and `train_val_split` carves the validation set used for early stopping (9/1 in the
paper, 19/1 for the Table 4 LeNet-5-Caffe result).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from fzpack.data.cifar import CIFAR_STATS, load_cifar
from fzpack.data.idx import DATASET_STATS, DataError, load_idx_dataset
from fzpack.data.synthetic import make_synthetic

__all__ = ["DatasetInfo", "dataset_info", "list_datasets", "load_dataset", "train_val_split"]

_MASK63 = (1 << 63) - 1
# Salt mixed into the split seed so a split never reuses the permutation that `Batches` draws
# for epoch 0 of the same seed (which would correlate validation membership with batch order).
_SPLIT_SALT = 0x5EED_5B11


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of one data set (no file access needed to build it).

    Attributes:
        name: canonical registry name.
        num_classes: number of label values (0..num_classes-1).
        in_channels, image_size: images are ``in_channels x image_size x image_size``.
        mean, std: per-channel statistics of the training split in [0, 1] pixel units.
        default_batch_size: the paper's batch size (S1.1).
        augment: whether the paper augments the training split (flip + 4-pixel translation).
        train_size, test_size: number of images in the full splits.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_batch_size: int
    augment: bool
    train_size: int
    test_size: int


_REGISTRY: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 1, 28, (DATASET_STATS["fashion-mnist"][0],), (DATASET_STATS["fashion-mnist"][1],),
        100, False, 60_000, 10_000,
    ),
    "mnist": DatasetInfo(
        "mnist", 10, 1, 28, (DATASET_STATS["mnist"][0],), (DATASET_STATS["mnist"][1],), 100, False, 60_000, 10_000
    ),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, *CIFAR_STATS["cifar10"], 128, True, 50_000, 10_000),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, *CIFAR_STATS["cifar100"], 128, True, 50_000, 10_000),
    # Synthetic: MNIST-shaped stand-in; statistics measured on make_synthetic(2000, seed=0)
    # (prototypes uniform in [0, 1] plus clipped noise, so mean ~0.5 for every seed).
    "synthetic": DatasetInfo("synthetic", 10, 1, 28, (0.4988,), (0.3371,), 100, False, 2_000, 500),
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
    "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
}


def list_datasets() -> list[str]:
    """Canonical names of every registered data set.

    Returns:
        ``["fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"]``.

    Example:
        >>> "cifar10" in list_datasets()
        True
    """
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Look up a data set's description; names are case-insensitive, common aliases accepted.

    Args:
        name: e.g. ``"fashion-mnist"`` (also ``"FashionMNIST"``, ``"fmnist"``), ``"cifar10"``.

    Returns:
        The frozen `DatasetInfo`.

    Raises:
        DataError: unknown name; the message lists the valid ones.

    Example:
        >>> dataset_info("CIFAR-10").default_batch_size
        128
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    synthetic_size: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of a registered data set into memory.

    Args:
        name: a name accepted by `dataset_info`.
        split: ``"train"`` or ``"test"``.
        data_dir: root directory of the files (see the IDX and CIFAR readers for layouts);
            None uses the reader's default (the Debian package for Fashion-MNIST; CIFAR and
            MNIST have none). Ignored for ``"synthetic"``.
        synthetic_size: number of synthetic samples (default: the registry's train/test size);
            ignored for real data sets.
        seed: selects the synthetic task and samples; ignored for real data sets.

    Returns:
        ``(images, labels)``: uint8 ``N x C x H x W`` and int64 ``N``, with ``C, H, W`` as in
        the data set's `DatasetInfo`.

    Raises:
        DatasetNotFoundError: files missing (the message says how to get them).
        DataError: unknown name or split, malformed files, or images of the wrong shape.

    Example:
        >>> x, y = load_dataset("synthetic", "test")
        >>> x.shape, y.dtype
        (torch.Size([500, 1, 28, 28]), torch.int64)
    """
    info = dataset_info(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if info.name == "synthetic":
        n = synthetic_size if synthetic_size is not None else (info.train_size if split == "train" else info.test_size)
        images, labels = make_synthetic(
            n, seed=seed, split=split, num_classes=info.num_classes,
            in_channels=info.in_channels, image_size=info.image_size,
        )
    elif info.name in ("cifar10", "cifar100"):
        images, labels = load_cifar(info.name, data_dir, split)
    else:
        images, labels = load_idx_dataset(info.name, data_dir, split)
    # Models are built from the registry's shape, so a mismatching file must fail here, clearly.
    expected = (info.in_channels, info.image_size, info.image_size)
    if tuple(images.shape[1:]) != expected:
        raise DataError(f"{info.name} {split}: images are {tuple(images.shape[1:])}, expected {expected}")
    return images, labels


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into disjoint train / validation index sets, reproducibly.

    The validation size is ``round(n * val_fraction)``; both index tensors are sorted so the
    result reads as a set (the loader shuffles anyway). The permutation comes from an explicit
    `torch.Generator` seeded from ``seed``; the global RNG is neither read nor changed.

    Args:
        n: data set size.
        val_fraction: in ``[0, 1)``; FreezeNet uses 0.1 (9/1) and 0.05 (19/1).
        seed: any int; the same ``(n, val_fraction, seed)`` always gives the same split.

    Returns:
        ``(train_idx, val_idx)``: int64 tensors, disjoint, together covering ``range(n)``.

    Raises:
        DataError: ``n < 0`` or ``val_fraction`` outside ``[0, 1)``.

    Example:
        >>> tr, va = train_val_split(60_000, 0.1, seed=0)
        >>> len(tr), len(va)
        (54000, 6000)
    """
    if n < 0:
        raise DataError(f"train_val_split: n must be >= 0, got {n}")
    if not (0.0 <= val_fraction < 1.0) or math.isnan(val_fraction):
        raise DataError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(n * val_fraction)
    gen = torch.Generator(device="cpu").manual_seed((seed ^ _SPLIT_SALT) & _MASK63)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[torch.randperm(n, generator=gen)[:n_val]] = True
    # A membership mask yields both sets already sorted, in O(n) (no sort call needed).
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()
