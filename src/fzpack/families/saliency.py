"""SNIP / FreezeNet mask selection: which weights get trained (FreezeNet Algorithm 1).

1. `saliency_scores`: g = |dL/dW * W| (FreezeNet equation (1), SNIP's connection sensitivity)
   from ONE forward and backward pass on one batch, at the initialisation.
2. `select_trainable`: global top-k over all weight tensors with k = floor((1 - q) |W|)
   (Algorithm 1, lines 3-4), plus the rule of FreezeNet section 4: a layer left without any
   trainable weight gets exactly one, chosen at random from the seed.
3. `freeze_rates`: the freezing rate q and the real freezing rate q_beta (section 4).

The same mask serves SNIP (unselected weights set to zero) and FreezeNet (unselected weights
frozen at their seeded init). Only the ``.weight`` of Linear and Conv2d layers is ever frozen;
biases and BatchNorm parameters always train (section 3, "we only freeze weights").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fzpack.errors import FzpackError
from fzpack.generator import random_mask
from fzpack.weights import PRUNABLE_TYPES, prunable_weights

__all__ = [
    "PRUNABLE_TYPES",
    "prunable_weights",
    "saliency_scores",
    "num_trainable",
    "select_trainable",
    "freeze_rates",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def saliency_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    train_mode: bool = True,
) -> dict[str, torch.Tensor]:
    """Saliency g = |dL/dW * W| of every prunable weight (FreezeNet eq. (1), SNIP eq. (6)).

    One forward and one backward pass on the given batch. SNIP additionally divides by the
    sum of all scores; that constant does not change the ranking, so it is omitted.

    The model is left exactly as it was: gradients are taken with `torch.autograd.grad` on
    detached copies of the weights through `torch.func.functional_call`, so no ``.grad`` is
    written, no parameter or buffer changes (BatchNorm running statistics are updated on
    clones only), and every module's train/eval flag is restored. Dropout is switched off for
    the pass, so the score is deterministic and the global RNG is never touched.

    Args:
        model: the network at its initialisation.
        inputs: one batch (e.g. 100 MNIST images, as SNIP and FreezeNet use).
        targets: labels for ``loss_fn``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; default cross-entropy on logits.
        train_mode: run BatchNorm with batch statistics (as SNIP's training graph does);
            False uses the running statistics.

    Returns:
        ``{name: score}`` in `prunable_weights` order, detached, same shape and device as the weight.

    Example:
        >>> from fzpack.data import make_synthetic, normalize
        >>> from fzpack.models import create_model
        >>> x, y = make_synthetic(100, seed=0)
        >>> scores = saliency_scores(create_model("lenet5-caffe"), normalize(x), y)
        >>> scores["fc1.weight"].shape
        torch.Size([500, 800])
    """
    names = prunable_weights(model)
    if not names:
        raise FzpackError("saliency_scores: the model has no Linear or Conv2d weight to score")
    weights = {n: model.get_parameter(n).detach().requires_grad_(True) for n in names}
    state: dict[str, torch.Tensor] = {n: p.detach() for n, p in model.named_parameters()}
    state.update(weights)
    state.update({n: b.clone() for n, b in model.named_buffers()})

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(train_mode)
        for module in model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()
        with torch.enable_grad():
            outputs = functional_call(model, state, (inputs,))
            loss = loss_fn(outputs, targets)
            if loss.ndim != 0:
                raise FzpackError(f"saliency_scores: loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
    finally:
        for module, training in modes:
            module.training = training

    scores: dict[str, torch.Tensor] = {}
    for (name, w), g in zip(weights.items(), grads):
        # A weight the forward pass never used has no gradient: saliency 0, as eq. (1) gives.
        scores[name] = torch.zeros_like(w) if g is None else (g * w).abs().detach()
    return scores


def num_trainable(total: int, rate: float | Fraction) -> int:
    """k = floor((1 - q) * |W|), the number of weights Algorithm 1 selects at freezing rate q.

    A float ``rate`` is read as the shortest decimal that prints as it (``0.9`` means 9/10
    exactly), so binary rounding cannot make floor((1 - 0.9) * 430500) come out as 43049.

    Args:
        total: |W|, the number of prunable weights.
        rate: freezing rate q in [0, 1] (float, int or Fraction).

    Returns:
        The count k.

    Example:
        >>> num_trainable(430_500, 0.99)
        4305
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, Fraction)):
        raise FzpackError(f"freezing rate must be a number in [0, 1], got {rate!r}")
    if isinstance(rate, float) and not math.isfinite(rate):
        raise FzpackError(f"freezing rate must be a number in [0, 1], got {rate!r}")
    q = Fraction(repr(rate)) if isinstance(rate, float) else Fraction(rate)
    if not 0 <= q <= 1:
        raise FzpackError(f"freezing rate must be in [0, 1], got {rate!r}")
    return math.floor((1 - q) * total)


def select_trainable(
    scores: Mapping[str, torch.Tensor],
    rate: float | Fraction,
    *,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Trainable-weight masks: global top-k of the scores, then one weight per empty layer.

    Exactly k = `num_trainable` entries are selected over all tensors together (FreezeNet
    Algorithm 1: the threshold is the floor((1 - q)|W|)-th highest score). Where several
    entries tie with that threshold, the paper's ``>= threshold`` rule would select all of
    them; we take the tied entries in a fixed order instead - the order of ``scores``
    (`prunable_weights` order when it comes from `saliency_scores`), then row-major position
    within a tensor - so the count is exact and the mask reproducible.

    Then, as in FreezeNet section 4 ("we randomly flag one weight trainable per layer if all
    weights of this layer are frozen"), every tensor left with no selected entry gets exactly
    one, chosen by ``fzpack.generator.random_mask(seed, name, shape, 1)``. The final count is
    therefore k plus the number of such layers (at most 4 for LeNet-5-Caffe).

    Args:
        scores: ``{name: score tensor}``; higher means more important. NaN is rejected.
        rate: freezing rate q in [0, 1].
        seed: 32-bit seed for the one-per-layer draw (the model's seed).

    Returns:
        ``{name: bool tensor}``, same keys, order, shapes and devices as ``scores``; True = trainable.

    Example:
        >>> scores = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(4)}
        >>> masks = select_trainable(scores, 0.8, seed=1234)  # k = floor(0.2 * 10) = 2
        >>> masks["a"].tolist(), int(masks["b"].sum())  # top 2 in "a"; "b" gets its one
        ([[False, False, False], [False, True, True]], 1)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise FzpackError(f"seed must be an int in [0, 2**32), got {seed!r}")
    if not scores:
        raise FzpackError("select_trainable: no score tensors given")
    names = list(scores)
    tensors = [scores[n].detach() for n in names]
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64  # integer scores: exact in float64 up to 2**53
    device = tensors[0].device
    flat = torch.cat([t.reshape(-1).to(device=device, dtype=dtype) for t in tensors])
    total = flat.numel()
    if torch.isnan(flat).any():
        raise FzpackError("select_trainable: saliency scores contain NaN (diverged model or bad batch?)")
    k = num_trainable(total, rate)

    if k >= total:
        selected = torch.ones(total, dtype=torch.bool, device=device)
    elif k == 0:
        selected = torch.zeros(total, dtype=torch.bool, device=device)
    else:
        # kthvalue is O(n) and, unlike topk, has a defined answer; the k-th largest is the
        # (total - k + 1)-th smallest. Then resolve ties explicitly for an exact, stable count.
        threshold = torch.kthvalue(flat, total - k + 1).values
        selected = flat > threshold
        missing = k - int(selected.sum())
        tied = torch.nonzero(flat == threshold).squeeze(1)  # ascending positions
        selected[tied[:missing]] = True

    masks: dict[str, torch.Tensor] = {}
    for name, src, part in zip(names, tensors, torch.split(selected, [t.numel() for t in tensors])):
        mask = part.reshape(src.shape).to(src.device)
        if not bool(mask.any()) and mask.numel() > 0:
            mask = random_mask(seed, name, tuple(src.shape), 1, device=src.device)
            if int(mask.sum()) != 1:
                raise FzpackError(f"random_mask returned {int(mask.sum())} entries for {name}, expected 1")
        masks[name] = mask
    return masks


def freeze_rates(masks: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[float, float]:
    """Freezing rate q and real freezing rate q_beta (FreezeNet section 4).

    q = 1 - ||m||_0 / |W| counts weights only; q_beta = 1 - (||m||_0 + |B|) / (|W| + |B|)
    also counts B, every non-weight parameter of the model (biases and BatchNorm affine
    parameters), which always train. BatchNorm running statistics are buffers, not
    parameters, and are not counted.

    Args:
        masks: ``{name: mask}`` for exactly the model's `prunable_weights` (bool or 0/1).
        model: the network the masks belong to.

    Returns:
        ``(q, q_beta)`` as floats.

    Example:
        >>> model = torch.nn.Linear(4, 2)  # 8 weights, 2 biases
        >>> freeze_rates({"weight": torch.tensor([[True, False, False, False]] * 2)}, model)
        (0.75, 0.6)
    """
    names = prunable_weights(model)
    if set(masks) != set(names):
        missing = sorted(set(names) - set(masks))
        extra = sorted(set(masks) - set(names))
        raise FzpackError(f"freeze_rates: masks do not match the model (missing {missing}, unexpected {extra})")
    n_weights = 0
    n_trained = 0
    for name in names:
        weight = model.get_parameter(name)
        if tuple(masks[name].shape) != tuple(weight.shape):
            raise FzpackError(
                f"freeze_rates: mask {name} has shape {tuple(masks[name].shape)}, weight {tuple(weight.shape)}"
            )
        n_weights += weight.numel()
        n_trained += int(torch.count_nonzero(masks[name]))
    weight_ids = {id(model.get_parameter(n)) for n in names}
    n_other = sum(p.numel() for p in model.parameters() if id(p) not in weight_ids)
    q = 1.0 - n_trained / n_weights
    q_beta = 1.0 - (n_trained + n_other) / (n_weights + n_other)
    return q, q_beta
