"""Deterministic mini-batches from in-memory uint8 tensors, with CIFAR augmentation and sharding.

Everything random about an epoch (the order, the flips, the translations) is drawn from one
`torch.Generator` seeded from ``(seed, epoch)``; the global RNG is never read or seeded. So a
run is reproducible from its seed alone, and every rank of a distributed job draws the same
epoch permutation without communicating, as `torch.utils.data.DistributedSampler` does.

No `DataLoader` worker processes: the data sets fzpack trains on fit in memory as uint8, and a
batch is one gather plus one vectorised augmentation, far cheaper than a model step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from fzpack.data.idx import DataError

__all__ = ["Batches", "MAX_TRANSLATION", "epoch_seed"]

# Paper S1.1 / Sec. 4.3: "translations up to 4 pixels", i.e. pad 4 + random crop.
MAX_TRANSLATION = 4
_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: a hash of ``(seed, epoch)``, in ``[0, 2**63)``.

    Hashing (rather than ``seed + epoch``) keeps runs with neighbouring seeds from sharing
    epochs: seed 0 epoch 1 and seed 1 epoch 0 get unrelated streams.

    Args:
        seed: the run's data seed (any int).
        epoch: the epoch number (any int).

    Returns:
        A non-negative int suitable for `torch.Generator.manual_seed`.

    Example:
        >>> epoch_seed(0, 1) != epoch_seed(1, 0)
        True
    """
    return _splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) & _MASK63


def _channel_stats(values: float | Sequence[float], channels: int, what: str) -> torch.Tensor:
    stats = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(stats) == 1:
        stats *= channels
    if len(stats) != channels:
        raise DataError(f"Batches: {what} has {len(stats)} values for {channels} channels")
    return torch.tensor(stats, dtype=torch.float32).view(1, channels, 1, 1)


def _augment(x: torch.Tensor, flip: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Pad by `MAX_TRANSLATION` zeros, crop at per-image ``offset`` (y, x), then mirror where ``flip``.

    One advanced-indexing gather for the whole batch: row/column source indices are built per
    image, with the column order reversed for flipped images.
    """
    b, c, h, w = x.shape
    p = MAX_TRANSLATION
    # Zero padding in raw pixel space (black), as torchvision's RandomCrop(padding=4) before Normalize.
    padded = F.pad(x, (p, p, p, p))
    dev = x.device
    rows = offset[:, 0:1] + torch.arange(h, device=dev)  # b x h
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flip[:, None], (w - 1) - cols, cols) + offset[:, 1:2]  # b x w
    return padded[
        torch.arange(b, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


class Batches:
    """Iterable of ``(images, labels)`` mini-batches over in-memory data, reproducible per epoch.

    Args:
        images: uint8 ``N x C x H x W`` (kept on the CPU; each batch is moved to ``device``).
        labels: int64 ``N``.
        batch_size: images per batch (per rank).
        mean, std: per-channel statistics in [0, 1] units (a scalar or one value per channel);
            batches are ``(x / 255 - mean) / std``.
        shuffle: draw a fresh permutation each epoch (train); False keeps file order (test).
        seed: the run's data seed; epoch ``e`` uses ``torch.Generator`` seeded with
            ``epoch_seed(seed, e)``.
        augment: random horizontal flip (p = 0.5) and translation by up to 4 pixels in x and y
            (zero pad 4 + random crop), drawn from the epoch generator.
        drop_last: drop this rank's last batch when it is smaller than ``batch_size``.
        rank, world_size: shard for `torch.distributed`: each rank takes every ``world_size``-th
            entry of the epoch permutation, padded by wrapping around (as `DistributedSampler`)
            so every rank gets the same number of samples and batches.
        device: where batches are delivered.

    Example:
        >>> x = torch.zeros(10, 1, 4, 4, dtype=torch.uint8); y = torch.arange(10)
        >>> b = Batches(x, y, batch_size=4, mean=0.5, std=0.5, shuffle=True, seed=0)
        >>> b.set_epoch(3); [len(lb) for _, lb in b], len(b)
        ([4, 4, 2], 3)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        shuffle: bool,
        seed: int,
        augment: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"Batches: expected uint8 images N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"Batches: {images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if batch_size < 1:
            raise DataError(f"Batches: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"Batches: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        channels = images.shape[1]
        self.images = images.cpu()
        self.labels = labels.cpu().to(torch.int64)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)
        mean_t = _channel_stats(mean, channels, "mean")
        std_t = _channel_stats(std, channels, "std")
        if bool((std_t <= 0).any()):
            raise DataError(f"Batches: std must be positive, got {std}")
        # (x/255 - mean)/std == x * scale - shift: one multiply-add per pixel on the device.
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)
        self._shift = (mean_t / std_t).to(self.device)
        self.epoch = 0
        n = images.shape[0]
        self.num_samples = math.ceil(n / world_size)  # per rank, after wrap-around padding
        self.total_size = self.num_samples * world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses.

        Like `DistributedSampler.set_epoch`: call it at the start of every epoch, otherwise every
        pass repeats the same order.

        Args:
            epoch: epoch number (any int).
        """
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This rank's sample indices and augmentation parameters for the current epoch."""
        n = self.images.shape[0]
        gen = torch.Generator(device="cpu").manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.total_size > n:
            # Wrap around (repeating the whole order if n < world_size, like DistributedSampler).
            order = order.repeat(math.ceil(self.total_size / n))[: self.total_size]
        flip = offset = None
        if self.augment:
            # Drawn for every position of the padded epoch, on every rank, so (when world_size
            # divides N) a sample's augmentation is the same whatever the world size.
            flip = torch.rand(self.total_size, generator=gen) < 0.5
            offset = torch.randint(0, 2 * MAX_TRANSLATION + 1, (self.total_size, 2), generator=gen)
        mine = slice(self.rank, self.total_size, self.world_size)
        return order[mine], (flip[mine] if flip is not None else None), (offset[mine] if offset is not None else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)``: float32 normalised ``B x C x H x W`` and int64 ``B``, on ``device``."""
        indices, flip, offset = self._epoch_plan()
        for i in range(len(self)):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = indices[part]
            # Move uint8 (4x fewer bytes than float32); augment and convert on the device, where
            # the gather is cheap on a GPU. The random parameters were drawn on the CPU already.
            x = self.images[idx].to(self.device, non_blocking=True)
            if flip is not None and offset is not None:
                x = _augment(x, flip[part].to(self.device), offset[part].to(self.device))
            x = x.to(torch.float32) * self._scale - self._shift
            yield x, self.labels[idx].to(self.device, non_blocking=True)
