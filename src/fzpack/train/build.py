"""Build the network a run trains: a plain registry model, then its family's ``transform_``.

Every method starts from the same plain model (`create_model`, biases and the rest from a
torch generator seeded by ``derive_seed(seed, "torch-default")``) and ends with a module whose
``parameters()`` are exactly what the optimizer may change. What a method does to it is its
family's business (`fzpack.families`): the trainer only looks the family up by method name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenInfo
from fzpack.data.datasets import DatasetInfo
from fzpack.errors import FzpackError
from fzpack.families import Family, FrozenState, get_family
from fzpack.freeze import STATE_ATTR
from fzpack.models.registry import create_model, model_info
from fzpack.train.config import TrainConfig, TrainError, derive_seed

__all__ = ["BuiltModel", "arch_config", "build_model", "rebuild_model"]


@dataclass
class BuiltModel:
    """A model ready to train, with what the checkpoint needs to describe it.

    Attributes:
        model: the family's training form of the model, on the batch's device.
        state: its `FrozenState` (method, family config, seed, templates, banks, info, record).
        arch: ``{"name": ..., "config": {...}}`` for ``load_model``.
    """

    model: nn.Module
    state: FrozenState
    arch: dict[str, Any]

    @property
    def family(self) -> Family:
        return get_family(self.state.method)

    @property
    def templates(self) -> dict[str, Any]:
        return self.state.templates

    @property
    def info(self) -> dict[str, Any]:
        return self.state.info


def arch_config(config: TrainConfig, data: DatasetInfo) -> dict[str, Any]:
    """The constructor config: the data set's shape and classes where the model takes them.

    Args:
        config: the run (its ``arch_config`` overrides win).
        data: the data set's description.

    Returns:
        Keyword arguments for ``create_model(config.arch, ...)``.

    Example:
        >>> arch_config(TrainConfig(arch="resnet20"), dataset_info("cifar100"))
        {'num_classes': 100, 'in_channels': 3}
    """
    accepted = model_info(config.arch).default_config
    derived = {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.image_size}
    out = {k: v for k, v in derived.items() if k in accepted}
    out.update(config.arch_config)
    return out


def _plain_model(config: TrainConfig, cfg: dict[str, Any], seed: int) -> nn.Module:
    # Biases (and anything else torch initialises by default) come from an explicit generator.
    gen = torch.Generator(device="cpu").manual_seed(derive_seed(seed, "torch-default"))
    return create_model(config.arch, generator=gen, **cfg)


def _check_runs(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], config: TrainConfig) -> None:
    """One eval-mode forward (no BatchNorm update) so a data/architecture mismatch fails early, clearly."""
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(batch[0][:2])
    except (RuntimeError, ValueError) as e:
        raise TrainError(f"{config.arch} cannot run on {config.dataset} batches of shape {tuple(batch[0].shape)}: "
                         f"{str(e).splitlines()[0]}") from e
    finally:
        model.train(was)


def build_model(config: TrainConfig, data: DatasetInfo, batch: tuple[torch.Tensor, torch.Tensor]) -> BuiltModel:
    """Create the plain model and let the method's family transform it (`fzpack.families`).

    Args:
        config: the run (method, arch, seed and the family's options).
        data: the data set's description (classes, channels, size).
        batch: one normalised training batch (FreezeNet's saliency pass), on the mask device.

    Returns:
        A `BuiltModel`; its module is on ``batch``'s device.

    Example:
        >>> built = build_model(TrainConfig(arch="lenet-300-100"), dataset_info("synthetic"), (x, y))
        >>> sum(p.numel() for p in built.model.parameters())   # K trained weights + 410 biases
    """
    cfg = arch_config(config, data)
    device = batch[0].device
    model = _plain_model(config, cfg, config.seed).to(device)
    _check_runs(model, batch, config)
    family = get_family(config.method)
    try:
        # fresh_model: Algorithm S1 (freezenet-reinit) takes its mask from a second, fresh model
        state = family.transform_(model, config.family_config(), batch,
                                  fresh_model=lambda seed: _plain_model(config, cfg, seed).to(device))
    except FzpackError as e:
        raise TrainError(f"{config.method} on {config.arch}: {e}") from e
    setattr(model, STATE_ATTR, state)
    return BuiltModel(model, state, {"name": config.arch, "config": cfg})


def rebuild_model(state_dict: dict[str, torch.Tensor], frozen: FrozenInfo, method: str, info: dict[str, Any]) -> BuiltModel:
    """Rebuild the training-side model from a convention checkpoint (used to resume a run).

    No saliency pass is needed: masks, init specs, scales and offsets are in the checkpoint.
    The caller then loads the converted state (optimizer-side scalars included).

    Args:
        state_dict: the checkpoint's dense ``state_dict``.
        frozen: its parsed ``fzpack`` entry (``frozen_info``), with ``arch`` set.
        method: the run's method.
        info: the run's saved info dict (q, q_beta, ...).

    Returns:
        A `BuiltModel` on the CPU.
    """
    if not frozen.arch:
        raise TrainError("the resume checkpoint names no architecture")
    arch = {"name": frozen.arch["name"], "config": dict(frozen.arch.get("config") or {})}
    model = create_model(arch["name"], **arch["config"])
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise TrainError(f"resume checkpoint does not fit {arch['name']}: {str(e).splitlines()[0]}") from e
    try:
        state = get_family(method).rebuild_(model, frozen, method)
    except FzpackError as e:
        raise TrainError(f"resume checkpoint: {e}") from e
    state.info = dict(info)
    setattr(model, STATE_ATTR, state)
    return BuiltModel(model, state, arch)
