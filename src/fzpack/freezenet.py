"""FreezeNet in one call (paper Algorithm 1): seeded init, saliency mask, ready to train and save."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.checkpoint import FrozenTensor, init_from_seed_
from fzpack.methods.saliency import saliency_scores, select_trainable


def freeze_(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *, rate: float = 0.99, seed: int,
            scheme: str = "xavier_normal", loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
            ) -> dict[str, FrozenTensor]:
    """Initialise ``model`` from the seed and choose its trainable weights, in place.

    Follows FreezeNet Algorithm 1: every Linear/Conv weight is drawn from fzpack's generator
    (``scheme``, Xavier-normal by default as in the paper's section 4), the saliency
    |dL/dW * W| of one batch ranks all weights globally, the top floor((1 - q) |W|) are trainable
    and a layer left without any gets one random trainable weight. Biases and BatchNorm
    parameters are not part of the mask: they always train.

    Args:
        model: any module with Linear/Conv layers.
        batch: ``(inputs, targets)``, one training batch (the paper uses the training batch size).
        rate: freezing rate q.
        seed: 32-bit seed for the init and the one-per-layer picks.
        scheme: init scheme of :mod:`fzpack.generator`.
        loss_fn: the training loss.

    Returns:
        ``{name: FrozenTensor}`` (init spec + mask, True = trained) for ``make_checkpoint``.

    Example:
        >>> frozen = freeze_(model, (x[:100], y[:100]), rate=0.99, seed=1)
        >>> sum(int(f.mask.sum()) for f in frozen.values())
        4310
    """
    frozen = init_from_seed_(model, seed, scheme)
    masks = select_trainable(saliency_scores(model, batch[0], batch[1], loss_fn), rate, seed=seed)
    for name, m in masks.items():
        frozen[name].mask = m
    return frozen
