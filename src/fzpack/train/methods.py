"""Build the network a method trains: init from the seed, pick the trained weights, convert.

Every method starts from the same plain model (`create_model`, biases from a generator seeded
by ``derive_seed(seed, "torch-default")``) and ends with a module whose ``parameters()`` are
exactly what the optimizer may change:

===================  ==========================================================================
freezenet            Algorithm 1: weights from the seed (``init``), SNIP saliency mask of one
                     batch (`fzpack.freezenet.freeze_`), the rest frozen at the init
                     (`fzpack.layers.convert_`: only the K trained entries are Parameters).
freezenet-wd         Same mask; weight decay also shrinks the frozen weights (section 4.2). They
                     stay regenerable as ``float32(generate(spec) * scale)`` with one exact scalar
                     per tensor (``convert_(decay_frozen=True)`` + ``decay_frozen_`` each step).
freezenet-reinit     Algorithm S1 (FreezeNet-A-B): the mask comes from a network initialised with
                     scheme A (``init``) from the derived seed ``derive_seed(seed, "reinit-mask")``;
                     then every weight is re-drawn with scheme B (``reinit``) from ``seed`` itself,
                     and biases from a fresh generator. The checkpoint stores ``seed`` and scheme
                     B's spec, so the frozen values regenerate as ``generate(spec_B, seed, name)``;
                     the mask seed is only needed to recompute the mask, and is kept in metadata.
snip                 Same saliency mask as freezenet; the other weights are pruned: frozen part
                     ``InitSpec("zeros")`` (scheme "zeros"), trained entries start at their init.
random-mask          Weights from the seed, mask drawn at random with the same global count k as
                     freezenet: per-layer counts are those of a uniformly random k-subset of all
                     weights (``random_mask(seed, "fzpack.train/random-mask-counts", (|W|,), k)``
                     split by layer), positions within a layer from
                     ``random_mask(seed, name, shape, k_layer)``. Together this is a uniform
                     k-subset; an empty layer gets one weight, as select_trainable does.
dense                Weights from the seed, all trained; no fzpack tensors (the baseline).
===================  ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenInfo, FrozenTensor, init_from_seed_
from fzpack.data.datasets import DatasetInfo
from fzpack.errors import FzpackError
from fzpack.freezenet import freeze_
from fzpack.generator import InitSpec, random_mask
from fzpack.layers import convert_
from fzpack.methods.saliency import freeze_rates, num_trainable, prunable_weights
from fzpack.models.registry import create_model, model_info
from fzpack.train.config import TrainConfig, TrainError, derive_seed

__all__ = ["BuiltModel", "arch_config", "build_model", "random_masks", "rebuild_model", "RANDOM_COUNTS_STREAM"]

RANDOM_COUNTS_STREAM = "fzpack.train/random-mask-counts"


@dataclass
class BuiltModel:
    """A model ready to train, with what the checkpoint needs to describe it.

    Attributes:
        model: converted (frozen-weight layers) or plain (dense) module, on the CPU.
        templates: convention entries at init, ``{name: FrozenTensor}`` (empty for dense).
        arch: ``{"name": ..., "config": {...}}`` for ``load_model``.
        decay_frozen: freezenet-wd: call ``decay_frozen_`` after every optimizer step.
        info: primitives for metrics and metadata (q, q_beta, trained weights, mask seed ...).
    """

    model: nn.Module
    templates: dict[str, FrozenTensor]
    arch: dict[str, Any]
    decay_frozen: bool = False
    info: dict[str, Any] = field(default_factory=dict)


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


def _saliency_mask(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, seed: int,
                   scheme: str) -> dict[str, FrozenTensor]:
    try:
        return freeze_(model, batch, rate=config.freeze_rate, seed=seed, scheme=scheme)
    except (RuntimeError, ValueError) as e:  # shape mismatch between data and architecture, mostly
        raise TrainError(f"{config.arch} cannot run on {config.dataset} batches of shape {tuple(batch[0].shape)}: "
                         f"{str(e).splitlines()[0]}") from e


def build_model(config: TrainConfig, data: DatasetInfo, batch: tuple[torch.Tensor, torch.Tensor]) -> BuiltModel:
    """Initialise, select and convert the model of ``config.method`` (table in the module docstring).

    Args:
        config: the run (method, arch, init, reinit, freeze_rate, seed).
        data: the data set's description (classes, channels, size).
        batch: one normalised training batch for the saliency pass (on the mask device).

    Returns:
        A `BuiltModel`; its module is on ``batch``'s device.

    Example:
        >>> built = build_model(TrainConfig(arch="lenet-300-100"), dataset_info("synthetic"), (x, y))
        >>> sum(p.numel() for p in built.model.parameters())   # K trained weights + 410 biases
    """
    cfg = arch_config(config, data)
    arch = {"name": config.arch, "config": cfg}
    seed, method = config.seed, config.method
    device = batch[0].device
    model = _plain_model(config, cfg, seed).to(device)
    info: dict[str, Any] = {"init_scheme": config.init}

    if method in ("dense", "random-mask"):  # the other methods run the batch in the saliency pass
        _check_runs(model, batch, config)
    if method == "dense":
        init_from_seed_(model, seed, config.init)
        n = sum(p.numel() for p in model.parameters())
        w = sum(model.get_parameter(name).numel() for name in prunable_weights(model))
        info.update(q=0.0, q_beta=0.0, trained_weights=w, total_weights=w, trained_parameters=n, total_parameters=n)
        return BuiltModel(model, {}, arch, info=info)

    if method == "freezenet-reinit":
        mask_seed = derive_seed(seed, "reinit-mask")
        scout = _plain_model(config, cfg, mask_seed).to(device)
        masks = {n: f.mask for n, f in _saliency_mask(scout, batch, config, mask_seed, config.init).items()}
        templates = init_from_seed_(model, seed, config.reinit_scheme)
        for name, m in masks.items():
            templates[name].mask = m
        info.update(mask_seed=mask_seed, init_scheme=config.init, reinit_scheme=config.reinit_scheme)
    elif method == "random-mask":
        templates = init_from_seed_(model, seed, config.init)
        for name, m in random_masks(model, config.freeze_rate, seed).items():
            templates[name].mask = m.to(device)
    else:  # freezenet, freezenet-wd, snip share Algorithm 1's mask
        templates = _saliency_mask(model, batch, config, seed, config.init)
        if method == "snip":
            templates = {n: FrozenTensor(InitSpec("zeros"), f.mask, "zeros") for n, f in templates.items()}

    masks = {n: f.mask for n, f in templates.items()}
    q, q_beta = freeze_rates(masks, model)
    k = sum(int(m.sum()) for m in masks.values())
    info.update(q=q, q_beta=q_beta, trained_weights=k, total_weights=sum(m.numel() for m in masks.values()))
    templates = {n: FrozenTensor(f.spec, f.mask.cpu(), f.scheme, f.scale) for n, f in templates.items()}
    convert_(model, templates, seed=seed, decay_frozen=method == "freezenet-wd")
    info["trained_parameters"] = sum(p.numel() for p in model.parameters())
    info["total_parameters"] = info["total_weights"] + info["trained_parameters"] - k
    return BuiltModel(model, templates, arch, decay_frozen=method == "freezenet-wd", info=info)


def rebuild_model(state_dict: dict[str, torch.Tensor], frozen: FrozenInfo, method: str, info: dict[str, Any]) -> BuiltModel:
    """Rebuild the training-side model from a convention checkpoint (used to resume a run).

    No saliency pass is needed: the mask, the init spec and (freezenet-wd) the scale are in the
    checkpoint. The caller then loads the converted state (optimizer-side scalars included).

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
    templates = {n: FrozenTensor(f.spec, f.mask, f.scheme, None) for n, f in frozen.tensors.items()}
    decay = method == "freezenet-wd"
    if templates:
        try:
            convert_(model, {n: FrozenTensor(f.spec, f.mask, f.scheme, frozen.tensors[n].scale) for n, f in templates.items()},
                     seed=frozen.seed, decay_frozen=decay)
        except FzpackError as e:
            raise TrainError(f"resume checkpoint: {e}") from e
    return BuiltModel(model, templates, arch, decay_frozen=decay, info=dict(info))
