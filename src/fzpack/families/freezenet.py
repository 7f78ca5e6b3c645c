"""FreezeNet and its baselines: which weights train is chosen once, the rest stay frozen (or pruned).

Methods (presets of `FreezeNetConfig`), FreezeNet paper section 3 and supplementary S1:

===================  ==========================================================================
freezenet            Algorithm 1: weights from the seed (``init``), SNIP saliency |dL/dW * W| of
                     one batch ranks all weights globally, the top floor((1 - q)|W|) train, a layer
                     left without any gets one; the rest stay frozen at the init.
freezenet-wd         Same mask; weight decay also shrinks the frozen weights (section 4.2). They
                     stay regenerable as ``float32(generate(spec) * scale)`` with one exact scalar
                     per tensor (``scale_mode="decay"``, updated after every optimizer step).
freezenet-reinit     Algorithm S1 (FreezeNet-A-B): the mask comes from a copy initialised with
                     scheme A (``init``) from ``derive_seed(seed, "reinit-mask")``; then every weight
                     is re-drawn with scheme B (``reinit_init``) from ``seed`` itself.
snip                 Same saliency mask; the other weights are pruned: frozen part ``zeros``.
random-mask          Weights from the seed, the same global count k, a uniformly random k-subset:
                     per-layer counts of ``random_mask(seed, RANDOM_COUNTS_STREAM, (|W|,), k)``
                     split by layer, positions ``random_mask(seed, name, shape, k_layer)``.
===================  ==========================================================================
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.checkpoint import FrozenTensor, init_from_seed_
from fzpack.errors import FzpackError
from fzpack.families.registry import Batch, Family, FamilyConfig, FrozenState, TrainDefaults, register_family
from fzpack.families.saliency import freeze_rates, num_trainable, prunable_weights, saliency_scores, select_trainable
from fzpack.generator import SCHEMES, InitSpec, random_mask
from fzpack.layers import convert_, decay_frozen_
from fzpack.seeds import derive_seed

__all__ = ["FreezeNetConfig", "FreezeNetFamily", "RANDOM_COUNTS_STREAM", "random_masks", "select_frozen"]

RANDOM_COUNTS_STREAM = "fzpack.train/random-mask-counts"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FreezeNetConfig(FamilyConfig):
    """How to freeze a network FreezeNet-style (defaults: the paper's FreezeNet).

    Attributes:
        version: schema version (1).
        rate: freezing rate q: the fraction of Linear/Conv weights that do not train.
        seed: 32-bit seed of the init, the mask picks and the checkpoint.
        init: init scheme of the weights (``xavier_normal``: the paper's default).
        mask: ``saliency`` (SNIP score, Algorithm 1) or ``random`` (random-mask baseline).
        frozen: ``init`` (FreezeNet: kept at the init) or ``zeros`` (SNIP: pruned).
        decay_frozen: FreezeNet-WD: weight decay also shrinks the frozen weights.
        reinit: Algorithm S1: mask from scheme ``init`` at a derived seed, weights re-drawn.
        reinit_init: scheme B of Algorithm S1 (None: same as ``init``).
    """

    version: int = 1
    rate: float = 0.99
    seed: int = 0
    init: str = "xavier_normal"
    mask: str = "saliency"
    frozen: str = "init"
    decay_frozen: bool = False
    reinit: bool = False
    reinit_init: str | None = None

    def validate(self) -> FreezeNetConfig:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0.0 <= self.rate < 1.0:
            raise FzpackError(f"FreezeNetConfig: rate must be in [0, 1), got {self.rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise FzpackError(f"FreezeNetConfig: seed must be an integer in [0, 2**32), got {self.seed!r}")
        for scheme in (self.init, self.reinit_init or self.init):
            if scheme not in SCHEMES:
                raise FzpackError(f"FreezeNetConfig: unknown init scheme {scheme!r}")
        if self.mask not in ("saliency", "random") or self.frozen not in ("init", "zeros"):
            raise FzpackError(f"FreezeNetConfig: mask must be saliency|random and frozen init|zeros, got {self.mask!r}, {self.frozen!r}")
        if (self.decay_frozen or self.reinit) and (self.frozen != "init" or self.mask != "saliency"):
            raise FzpackError("FreezeNetConfig: decay_frozen and reinit apply to saliency masks over frozen (not pruned) weights")
        if self.decay_frozen and self.reinit:
            raise FzpackError("FreezeNetConfig: decay_frozen and reinit are separate methods")
        return self


def select_frozen(model: nn.Module, batch: Batch, *, rate: float = 0.99, seed: int, scheme: str = "xavier_normal",
                  loss_fn: LossFn = F.cross_entropy) -> dict[str, FrozenTensor]:
    """Algorithm 1 without the conversion: seeded init and saliency mask, in place on a plain model.

    Every Linear/Conv weight is drawn from fzpack's generator (``scheme``), the saliency
    |dL/dW * W| of one batch ranks all weights globally, the top floor((1 - q)|W|) are trainable
    and a layer left without any gets one random trainable weight. Biases and BatchNorm
    parameters always train.

    Args:
        model: any module with Linear/Conv layers.
        batch: ``(inputs, targets)``, one training batch.
        rate: freezing rate q.
        seed: 32-bit seed for the init and the one-per-layer picks.
        scheme: init scheme of :mod:`fzpack.generator`.
        loss_fn: the training loss.

    Returns:
        ``{name: FrozenTensor}`` (init spec + mask, True = trained).

    Example:
        >>> frozen = select_frozen(model, (x[:100], y[:100]), rate=0.99, seed=1)
        >>> sum(int(f.mask.sum()) for f in frozen.values())
        4310
    """
    frozen = init_from_seed_(model, seed, scheme)
    masks = select_trainable(saliency_scores(model, batch[0], batch[1], loss_fn), rate, seed=seed)
    for name, m in masks.items():
        frozen[name].mask = m
    return frozen


def random_masks(model: nn.Module, rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Random freezing masks with FreezeNet's global count (see the module table, random-mask).

    Args:
        model: the plain model (only shapes are read).
        rate: freezing rate q; k = floor((1 - q) |W|) as in Algorithm 1.
        seed: the run's seed.

    Returns:
        ``{name: bool mask}`` for every Linear/Conv weight, True = trained.

    Example:
        >>> masks = random_masks(create_model("lenet-300-100"), 0.99, seed=1)
        >>> sum(int(m.sum()) for m in masks.values())
        2662
    """
    names = prunable_weights(model)
    sizes = [model.get_parameter(n).numel() for n in names]
    total = sum(sizes)
    k = num_trainable(total, rate)
    chosen = random_mask(seed, RANDOM_COUNTS_STREAM, (total,), k)
    counts = [int(part.sum()) for part in torch.split(chosen, sizes)]
    masks = {}
    for name, k_layer in zip(names, counts):
        shape = tuple(model.get_parameter(name).shape)
        masks[name] = random_mask(seed, name, shape, max(k_layer, 1 if math.prod(shape) else 0))
    return masks


@register_family
class FreezeNetFamily(Family):
    """FreezeNet (Wimmer et al.), its -WD and -reinit variants, and the SNIP and random-mask baselines."""

    name = "freezenet"
    config_cls = FreezeNetConfig
    methods = {"freezenet": {}, "freezenet-wd": {"decay_frozen": True}, "freezenet-reinit": {"reinit": True},
               "snip": {"frozen": "zeros"}, "random-mask": {"mask": "random"}}
    record_keys = ("mask_seed", "reinit_scheme")
    help = {"freezenet": "SNIP-saliency mask, the rest frozen at the seeded init (FreezeNet Algorithm 1)",
            "freezenet-wd": "+ weight decay on the frozen weights, kept exact by one scale per tensor (section 4.2)",
            "freezenet-reinit": "mask from scheme A at a derived seed, weights re-drawn with scheme B (Algorithm S1)",
            "snip": "same mask, the rest pruned to zero (SNIP)",
            "random-mask": "random mask with the same global count, the rest frozen"}
    needs_batch = True

    def method_of(self, config: FreezeNetConfig) -> str:
        for method, preset in self.methods.items():
            if preset and all(getattr(config, k) == v for k, v in preset.items()):
                return method
        return "freezenet"

    def transform_(self, model: nn.Module, config: FreezeNetConfig, batch: Batch | None = None, *,
                   loss_fn: LossFn = F.cross_entropy, fresh_model: Callable[[int], nn.Module] | None = None,
                   **_: Any) -> FrozenState:
        """Init, select and convert (module table).

        ``fresh_model(seed)``: a new plain model for Algorithm S1's mask (default: a copy of ``model``).
        """
        config.validate()
        if config.mask == "saliency" and batch is None:
            raise FzpackError("FreezeNet's saliency mask needs one training batch: freeze_(model, config, batch=(x, y))")
        seed = config.seed
        info: dict[str, Any] = {"init_scheme": config.init}
        record: dict[str, Any] = {}
        if config.reinit:
            mask_seed = derive_seed(seed, "reinit-mask")
            scout = fresh_model(mask_seed) if fresh_model is not None else copy.deepcopy(model)
            masks = {n: f.mask for n, f in select_frozen(scout, batch, rate=config.rate, seed=mask_seed, scheme=config.init,
                                                         loss_fn=loss_fn).items()}
            reinit = config.reinit_init or config.init
            templates = init_from_seed_(model, seed, reinit)
            for name, m in masks.items():
                templates[name].mask = m
            info.update(mask_seed=mask_seed, reinit_scheme=reinit)
            record.update(mask_seed=mask_seed, reinit_scheme=reinit)
        elif config.mask == "random":
            templates = init_from_seed_(model, seed, config.init)
            for name, m in random_masks(model, config.rate, seed).items():
                templates[name].mask = m.to(model.get_parameter(name).device)
        else:
            templates = select_frozen(model, batch, rate=config.rate, seed=seed, scheme=config.init, loss_fn=loss_fn)
            if config.frozen == "zeros":
                templates = {n: FrozenTensor(InitSpec("zeros"), f.mask, "zeros") for n, f in templates.items()}
        masks = {n: f.mask for n, f in templates.items()}
        q, q_beta = freeze_rates(masks, model)
        k = sum(int(m.sum()) for m in masks.values())
        info.update(q=q, q_beta=q_beta, trained_weights=k, total_weights=sum(m.numel() for m in masks.values()))
        templates = {n: FrozenTensor(f.spec, f.mask.cpu(), f.scheme, f.scale) for n, f in templates.items()}
        convert_(model, templates, seed=seed, **self.layer_options(config))
        info["trained_parameters"] = sum(p.numel() for p in model.parameters())
        info["total_parameters"] = info["total_weights"] + info["trained_parameters"] - k
        return FrozenState(method=self.method_of(config), config=config, seed=seed, templates=templates, info=info,
                           record=record)

    def layer_options(self, config: FreezeNetConfig) -> dict[str, Any]:
        return {"scale_mode": "decay"} if config.decay_frozen else {}

    def train_defaults(self, config: FreezeNetConfig) -> TrainDefaults:
        return TrainDefaults(source="FreezeNet S1.1: SGD momentum 0.9, lr 0.1 / 10 every 25k steps (30k CIFAR), wd 5e-4")

    def after_step(self, model: nn.Module, state: FrozenState, *, lr: float, weight_decay: float, momentum: float) -> None:
        if state.config.decay_frozen:
            decay_frozen_(model, lr, weight_decay, momentum)
