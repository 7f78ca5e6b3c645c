"""The data side of a run: splits, the saliency batch, per-rank training batches, eval sets.

Everything is in memory as uint8 (`fzpack.data`); the train/validation split and every epoch's
order come from the run's data seed, so every rank of a distributed job sees the same split
and draws disjoint shards of the same permutation without communicating.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fzpack.data.datasets import DatasetInfo, dataset_info, load_dataset, train_val_split
from fzpack.data.loader import Batches
from fzpack.train.config import TrainConfig, TrainError, derive_seed

__all__ = ["RunData", "load_run_data", "load_eval_split"]


@dataclass
class RunData:
    """The tensors and settings a run trains and evaluates on.

    Attributes:
        info: the data set's registry entry.
        train_x, train_y: training part of the training split (uint8 images, int64 labels).
        val_x, val_y: the held-out validation part (empty when ``val_split == 0``).
        test_x, test_y: the test split.
        batch_size: global batch size.
        augment: whether training batches are augmented.
        data_seed: seed of the split, the order and the augmentation.
    """

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    batch_size: int
    augment: bool
    data_seed: int

    def train_batches(self, rank: int, world_size: int, device: torch.device) -> Batches:
        """This rank's training batches; the global batch is split evenly over the ranks.

        Rank r of W takes every W-th sample of the epoch permutation, so the union of the
        ranks' i-th batches is the single-process run's i-th batch of ``batch_size``.
        """
        if self.batch_size % world_size:
            raise TrainError(f"batch size {self.batch_size} is not divisible by the {world_size} processes")
        return Batches(self.train_x, self.train_y, batch_size=self.batch_size // world_size, mean=self.info.mean,
                       std=self.info.std, shuffle=True, seed=self.data_seed, augment=self.augment, rank=rank,
                       world_size=world_size, device=device)

    def saliency_batch(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch for the SNIP/FreezeNet saliency pass (Algorithm 1, line 1).

        Drawn without augmentation from its own derived seed, and never sharded: every rank
        computes the same mask from the same batch.
        """
        b = Batches(self.train_x, self.train_y, batch_size=self.batch_size, mean=self.info.mean, std=self.info.std,
                    shuffle=True, seed=derive_seed(self.data_seed, "saliency-batch"), device=device)
        return next(iter(b))


def load_eval_split(name: str, data_dir: str | os.PathLike[str] | None = None, *, split: str = "test",
                    synthetic_seed: int = 0, synthetic_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a data set as uint8 images and labels (the synthetic task picked by its seed).

    Args:
        name: data set registry name.
        data_dir: its directory (None: the reader's default).
        split: ``train`` or ``test``.
        synthetic_seed: the synthetic task (ignored for real data).
        synthetic_size: synthetic sample count (None: registry size; ignored for real data).

    Returns:
        ``(images, labels)`` as `fzpack.data.load_dataset` gives them.
    """
    return load_dataset(name, split, data_dir, synthetic_size=synthetic_size, seed=synthetic_seed)


def load_run_data(config: TrainConfig) -> RunData:
    """Load the training and test splits and carve the validation set (9/1 by default).

    Args:
        config: the run (dataset, data_dir, synthetic_*, batch_size, val_split, augment, seeds).

    Returns:
        A `RunData`.

    Example:
        >>> data = load_run_data(TrainConfig(dataset="synthetic", synthetic_size=400))
        >>> len(data.train_x), len(data.val_x)
        (360, 40)
    """
    info = dataset_info(config.dataset)
    size = config.synthetic_size if info.name == "synthetic" else None
    x, y = load_eval_split(info.name, config.data_dir, split="train", synthetic_seed=config.synthetic_seed, synthetic_size=size)
    tx, ty = load_eval_split(info.name, config.data_dir, split="test", synthetic_seed=config.synthetic_seed)
    data_seed = config.resolved_data_seed
    tr, va = train_val_split(len(x), config.val_split, data_seed)
    if len(tr) == 0:
        raise TrainError(f"{info.name}: no training images left after the validation split")
    batch = config.batch_size or info.default_batch_size
    augment = info.augment if config.augment is None else config.augment
    return RunData(info, x[tr], y[tr], x[va], y[va], tx, ty, batch, augment, data_seed)
