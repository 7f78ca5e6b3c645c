"""The dense baseline: every weight trains, initialised from the seed; no frozen tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from fzpack.checkpoint import init_from_seed_
from fzpack.errors import FzpackError
from fzpack.families.registry import Batch, Family, FamilyConfig, FrozenState, TrainDefaults, register_family
from fzpack.families.saliency import prunable_weights
from fzpack.generator import SCHEMES

__all__ = ["DenseConfig", "DenseFamily"]


@dataclass
class DenseConfig(FamilyConfig):
    """A plain network whose Linear/Conv weights are drawn from fzpack's generator.

    Attributes:
        version: schema version (1).
        seed: 32-bit seed of the init.
        init: init scheme of the weights.
    """

    version: int = 1
    seed: int = 0
    init: str = "xavier_normal"

    def validate(self) -> DenseConfig:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise FzpackError(f"DenseConfig: seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.init not in SCHEMES:
            raise FzpackError(f"DenseConfig: unknown init scheme {self.init!r}")
        return self


@register_family
class DenseFamily(Family):
    """All weights train: the baseline every compression factor is measured against."""

    name = "dense"
    config_cls = DenseConfig
    methods = {"dense": {}}
    help = {"dense": "every weight trains (the baseline)"}

    def transform_(self, model: nn.Module, config: DenseConfig, batch: Batch | None = None, **_: Any) -> FrozenState:
        config.validate()
        init_from_seed_(model, config.seed, config.init)
        n = sum(p.numel() for p in model.parameters())
        w = sum(model.get_parameter(name).numel() for name in prunable_weights(model))
        info = {"init_scheme": config.init, "q": 0.0, "q_beta": 0.0, "trained_weights": w, "total_weights": w,
                "trained_parameters": n, "total_parameters": n}
        return FrozenState(method="dense", config=config, seed=config.seed, info=info)

    def train_defaults(self, config: DenseConfig) -> TrainDefaults:
        return TrainDefaults(source="FreezeNet S1.1 (its dense baseline)")
