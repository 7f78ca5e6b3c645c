"""LC-blocks / LCResNet (Gavrikov & Keuper): frozen random spatial convs, trained 1x1 linear combinations.

Paper: ../shared/papers/frozen-random-filters-lcresnet.md. In an LC network every *spatial*
convolution (kernel larger than 1 x 1) stays at its random initialisation and only the
*pointwise* (1 x 1) convolutions that combine its outputs train, with BatchNorm and the
classifier. On any model this family treats every Conv2d with a kernel larger than 1 x 1 as
spatial and every 1 x 1 Conv2d as pointwise (the LC-blocks' ``pointwise`` convs and the 1 x 1
projection shortcuts of `fzpack.models.lcresnet`).

Frozen spatial weights (``spatial="frozen"``), section 4.3 of the paper:

* ``share="none"``: each its own PyTorch default init, ``U[-1/sqrt(c_in k^2), +1/sqrt(c_in k^2)]``
  (``torch_default``) from fzpack's generator;
* ``share="global"``: one bank ``W_s ~ U[-1, 1]`` of the largest spatial layer's length, each
  layer's weight the reshaped slice ``W_s[0 : numel]`` scaled by ``s = 1/sqrt(c_in k^2)``
  (dist ``bank``, offset 0);
* ``share="recycled"``: a bank of ``1/R`` of that length (``bank_fraction = R``), rounded up to
  whole ``k x k`` kernels as the paper chooses its lengths, tiled where a slice is longer.

The bank is described in the file by its seed, name and length: it holds no bank bytes.
``l1`` adds ``lambda * sum |w|`` over the pointwise weights to the loss; ``prune_1x1 = rho``
applies global magnitude pruning to the pointwise weights after training (no fine-tuning),
which stores them as mask + values (a ``zeros`` frozen part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenTensor, init_from_seed_
from fzpack.errors import FzpackError
from fzpack.families.registry import Batch, Family, FamilyConfig, FrozenState, TrainDefaults, register_family
from fzpack.families.saliency import num_trainable, prunable_weights, select_trainable
from fzpack.generator import InitSpec, init_spec
from fzpack.layers import convert_

__all__ = ["BANK_NAME", "LCConfig", "LCFamily", "bank_length", "pointwise_weights", "spatial_weights"]

BANK_NAME = "lc.spatial"
SHARES = ("none", "global", "recycled")


@dataclass
class LCConfig(FamilyConfig):
    """An LC network (defaults: frozen random spatial convs, no sharing, no L1, no pruning).

    Attributes:
        version: schema version (1).
        seed: 32-bit seed of every init and of the bank.
        spatial: ``frozen`` (the paper's frozen random filters) or ``learnable`` (the comparison).
        share: ``none``, ``global`` or ``recycled`` weight sharing of the frozen spatial weights.
        bank_fraction: R of recycled sharing: the bank is 1/R of the largest spatial layer.
        l1: lambda of the L1 penalty on the pointwise weights (the paper: 5e-5).
        prune_1x1: rho, the fraction of pointwise weights pruned by magnitude after training.
    """

    version: int = 1
    seed: int = 0
    spatial: str = "frozen"
    share: str = "none"
    bank_fraction: int = 16
    l1: float = 0.0
    prune_1x1: float = 0.0

    def validate(self) -> LCConfig:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise FzpackError(f"LCConfig: seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.spatial not in ("frozen", "learnable") or self.share not in SHARES:
            raise FzpackError(f"LCConfig: spatial must be frozen|learnable and share one of {SHARES}, got {self.spatial!r}, {self.share!r}")
        if self.share != "none" and self.spatial != "frozen":
            raise FzpackError("LCConfig: weight sharing applies to frozen spatial convolutions (spatial='frozen')")
        if isinstance(self.bank_fraction, bool) or not isinstance(self.bank_fraction, int) or self.bank_fraction < 1:
            raise FzpackError(f"LCConfig: bank_fraction must be an integer >= 1, got {self.bank_fraction!r}")
        if not (math.isfinite(self.l1) and self.l1 >= 0) or not 0.0 <= self.prune_1x1 < 1.0:
            raise FzpackError(f"LCConfig: l1 must be >= 0 and prune_1x1 in [0, 1), got {self.l1!r}, {self.prune_1x1!r}")
        return self


def _conv_weights(model: nn.Module, pointwise: bool) -> list[str]:
    out = []
    for mname, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (math.prod(m.kernel_size) == 1) == pointwise:
            out.append(f"{mname}.weight" if mname else "weight")
    return out


def spatial_weights(model: nn.Module) -> list[str]:
    """State-dict names of every Conv2d weight with a kernel larger than 1 x 1, in module order."""
    return _conv_weights(model, pointwise=False)


def pointwise_weights(model: nn.Module) -> list[str]:
    """State-dict names of every 1 x 1 Conv2d weight, in module order."""
    return _conv_weights(model, pointwise=True)


def bank_length(shapes: list[tuple[int, ...]], share: str, fraction: int = 1) -> int:
    """Length of the shared bank: the largest spatial weight, or 1/R of it in whole kernels (recycled).

    Example:
        >>> bank_length([(16, 3, 3, 3), (16, 16, 3, 3)], "recycled", 16)
        144
    """
    largest = max(shapes, key=math.prod)
    length = math.prod(largest)
    if share != "recycled":
        return length
    kernel = math.prod(largest[2:]) or 1
    return kernel * max(1, -(-length // (fraction * kernel)))


@register_family
class LCFamily(Family):
    """Frozen (or learnable) random spatial convs combined by trained 1 x 1 convs, with weight sharing."""

    name = "lc"
    config_cls = LCConfig
    methods = {"lc-frozen": {"spatial": "frozen"}, "lc-learnable": {"spatial": "learnable"}}
    record_keys = ("spatial", "share", "bank_fraction", "l1", "prune_1x1")
    help = {"lc-frozen": "spatial convs frozen at random (optionally one shared / recycled bank), 1x1 convs train",
            "lc-learnable": "the same network with learnable spatial convs (the paper's comparison)"}

    def transform_(self, model: nn.Module, config: LCConfig, batch: Batch | None = None, **_: Any) -> FrozenState:
        config.validate()
        spatial, pointwise = spatial_weights(model), pointwise_weights(model)
        if not spatial:
            raise FzpackError("the LC family needs spatial (k x k, k > 1) Conv2d layers to freeze; the model has none")
        init_from_seed_(model, config.seed, "torch_default", names=prunable_weights(model))
        shapes = {n: tuple(model.get_parameter(n).shape) for n in spatial}
        banks: dict[str, int] = {}
        templates: dict[str, FrozenTensor] = {}
        if config.spatial == "frozen":
            if config.share != "none":
                banks[BANK_NAME] = bank_length(list(shapes.values()), config.share, config.bank_fraction)
            for n, shape in shapes.items():
                if config.share == "none":
                    spec, scheme = init_spec("torch_default", shape), "torch_default"
                else:
                    spec, scheme = init_spec("bank", shape, bank=BANK_NAME), "bank"  # scale 1/sqrt(c_in k^2)
                templates[n] = FrozenTensor(spec, torch.zeros(shape, dtype=torch.bool), scheme)
            convert_(model, templates, seed=config.seed, banks=banks)
        n_spatial = sum(math.prod(s) for s in shapes.values())
        n_pointwise = sum(model.get_parameter(n).numel() for n in pointwise)
        trained = sum(p.numel() for p in model.parameters())
        info: dict[str, Any] = {"spatial_weights": n_spatial, "pointwise_weights": n_pointwise, "trained_parameters": trained,
                                "total_parameters": trained + (n_spatial if config.spatial == "frozen" else 0),
                                "bank_length": banks.get(BANK_NAME, 0), "pruned_1x1": 0}
        record: dict[str, Any] = {"spatial": config.spatial, "share": config.share}
        if config.share == "recycled":
            record["bank_fraction"] = config.bank_fraction
        if config.l1:
            record["l1"] = config.l1
        if config.prune_1x1:
            record["prune_1x1"] = config.prune_1x1
        return FrozenState(method=self.method_of(config), config=config, seed=config.seed, templates=templates, banks=banks,
                           info=info, record=record)

    def regularizer(self, model: nn.Module, state: FrozenState) -> torch.Tensor | None:
        if not state.config.l1:
            return None
        weights = [model.get_parameter(n) for n in pointwise_weights(model)]
        return state.config.l1 * sum(w.abs().sum() for w in weights)

    def finalize_(self, model: nn.Module, state: FrozenState) -> None:
        """Global magnitude pruning of the pointwise weights (paper section 4.3), no fine-tuning."""
        rho = state.config.prune_1x1
        names = [n for n in pointwise_weights(model) if n not in state.templates]
        if not rho or not names:
            return
        with torch.no_grad():
            scores = {n: model.get_parameter(n).detach().abs() for n in names}
            masks = select_trainable(scores, rho, seed=state.seed)
        pruned = {n: FrozenTensor(InitSpec("zeros"), m.cpu(), "zeros") for n, m in masks.items()}
        convert_(model, pruned, seed=state.seed)
        state.templates.update(pruned)
        total = sum(m.numel() for m in masks.values())
        state.info["pruned_1x1"] = total - sum(int(m.sum()) for m in masks.values())
        state.info["kept_1x1"] = num_trainable(total, rho)

    def train_defaults(self, config: LCConfig) -> TrainDefaults:
        return TrainDefaults(optimizer="sgd", lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-2, lr_schedule="cosine",
                             label_smoothing=0.1, batch_size=256,
                             source="LC paper appendix C: SGD Nesterov 0.9, lr 1e-2 cosine, wd 1e-2, batch 256, label smoothing 0.1")

    def describe(self, info: dict[str, Any]) -> list[str]:
        lines = []
        frozen = [t for t in info.get("tensors", []) if t.get("kind") == "frozen"]
        spatial = [t for t in frozen if t["init"]["dist"] in ("bank", "uniform") and t["trained"] == 0]
        if spatial:
            lines.append(f"  {len(spatial)} frozen spatial convs, {sum(t['numel'] for t in spatial):,} weights, 0 bytes")
        for bank in info.get("banks", []):
            largest = max((t["numel"] for t in spatial), default=0)
            # a zero-length bank cannot be restored, but inspect describes files without restoring them
            frac = f", 1/{largest / bank['length']:.3g} of the largest slice ({largest:,})" if largest and bank["length"] else ""
            lines.append(f"  bank {bank['name']!r}: length {bank['length']:,}{frac}, regenerated from the seed")
        pruned = [t for t in frozen if t["init"]["dist"] == "zeros"]
        if pruned:
            n = sum(t["numel"] for t in pruned)
            lines.append(f"  pruned 1x1: {n - sum(t['trained'] for t in pruned):,} of {n:,} pointwise weights")
        return lines
