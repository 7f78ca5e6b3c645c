"""A tiny deterministic stand-in for MNIST, for tests and smoke runs.

Each class has a random prototype image; a sample is its class prototype plus Gaussian pixel
noise, clipped and quantised to uint8. That makes the task learnable in a few steps (so
training tests can assert progress) while staying cheap. Everything is drawn from explicit
`torch.Generator` objects: the global RNG is never read or seeded.
"""

from __future__ import annotations

import torch

from fzpack.data.idx import DataError

__all__ = ["make_synthetic"]

_SPLIT_STREAM = {"train": 1, "test": 2}
_MASK63 = (1 << 63) - 1


def make_synthetic(
    n: int = 1000,
    *,
    seed: int = 0,
    split: str = "train",
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    noise: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic MNIST-shaped classification data, identical for identical arguments.

    The class prototypes depend only on ``seed`` (and the shape), so the ``"train"`` and
    ``"test"`` splits of one seed describe the same task with independent noise and labels.

    Args:
        n: number of samples.
        seed: any non-negative int; selects the task and the samples.
        split: ``"train"`` or ``"test"``.
        num_classes: number of classes; labels are balanced (``i % num_classes``) then shuffled.
        in_channels: channels per image.
        image_size: height and width.
        noise: standard deviation of the pixel noise, in [0, 1] pixel units.

    Returns:
        ``(images, labels)`` in the same format as `load_idx_dataset`: uint8
        ``n x in_channels x image_size x image_size`` and int64 ``n``.

    Example:
        >>> x, y = make_synthetic(64, seed=3)
        >>> x.shape, x.dtype, y.dtype
        (torch.Size([64, 1, 28, 28]), torch.uint8, torch.int64)
    """
    if split not in _SPLIT_STREAM:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if n < 0 or num_classes < 1 or in_channels < 1 or image_size < 1 or seed < 0 or noise < 0:
        raise DataError("make_synthetic: n, seed, noise must be >= 0 and the shape/classes >= 1")
    shape = (in_channels, image_size, image_size)

    proto_gen = torch.Generator(device="cpu").manual_seed(seed & _MASK63)
    prototypes = torch.rand((num_classes, *shape), generator=proto_gen)

    # A separate stream per split, derived from the seed, so test samples never repeat train ones.
    sample_seed = (seed * 4 + _SPLIT_STREAM[split]) & _MASK63
    gen = torch.Generator(device="cpu").manual_seed(sample_seed)
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    labels = labels[torch.randperm(n, generator=gen)]
    pixels = prototypes[labels] + noise * torch.randn((n, *shape), generator=gen)
    images = (pixels.clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)
    return images, labels
