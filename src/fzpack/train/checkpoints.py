"""What a run writes: the final `model.pt` and the per-epoch resume checkpoint.

Both are checkpoints of the fzpack convention (formats/checkpoint-v1.md), built with
``make_checkpoint(dense_state_dict(model), frozen_entries(model, templates), ...)``, so
`fzpack compress` takes either directly. The resume checkpoint adds one top-level key,
``"train"``, holding what continuing the run bit-identically needs: the converted model's own
state (trained entries, BatchNorm, the FreezeNet-WD scale and its momentum), the optimizer and
AMP scaler state, the step and epoch counters, the best-validation state and the history.
Everything in it is tensors and primitives, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import frozen_info, load_checkpoint, make_checkpoint, save_checkpoint
from fzpack.layers import dense_state_dict, frozen_entries
from fzpack.train.config import TrainConfig, TrainError
from fzpack.train.build import BuiltModel, rebuild_model

__all__ = ["LoopState", "final_checkpoint", "resume_path", "save_resume", "load_resume"]

RESUME_VERSION = 1


@dataclass
class LoopState:
    """The counters of the training loop (everything but model, optimizer and scaler).

    Attributes:
        epoch: epochs completed.
        step: optimizer steps taken.
        best_epoch: 1-based epoch of the best validation accuracy (None before the first).
        best_val: that accuracy (-1 before the first evaluation).
        best_state: the converted model's state dict at that epoch (CPU tensors).
        bad_epochs: evaluations since the best one (for ``patience``).
        history: one dict per epoch (loss, accuracies, lr, seconds).
        elapsed: wall seconds spent in earlier segments of a resumed run.
        stopped_early: patience ran out.
    """

    epoch: int = 0
    step: int = 0
    best_epoch: int | None = None
    best_val: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_epoch": self.best_epoch, "best_val": self.best_val,
                "best_state": self.best_state, "bad_epochs": self.bad_epochs, "history": self.history,
                "elapsed": self.elapsed, "stopped_early": self.stopped_early}


def resume_path(output: str | os.PathLike) -> Path:
    """Where the resume checkpoint of ``output`` lives: ``model.pt`` -> ``model.resume.pt``."""
    out = Path(output)
    return out.with_name(f"{out.stem}.resume{out.suffix or '.pt'}")


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def final_checkpoint(model: nn.Module, built: BuiltModel, config: TrainConfig, metadata: dict[str, Any]) -> dict[str, Any]:
    """The convention checkpoint of the trained model (what ``model.pt`` holds).

    Args:
        model: the trained model (converted, or plain for dense).
        built: how it was built (templates, arch).
        config: the run (seed, method).
        metadata: primitives for ``fzpack.metadata`` (data set, accuracies, seeds ...).

    Returns:
        A dict for `fzpack.checkpoint.save_checkpoint` / `fzpack.compress`.
    """
    frozen = frozen_entries(model, built.templates) if built.templates else {}
    return make_checkpoint(dense_state_dict(model), frozen, seed=built.state.seed, method=built.state.method,
                           banks=built.state.banks, arch=built.arch, metadata={**built.state.record, **metadata})


def save_resume(path: str | os.PathLike, model: nn.Module, built: BuiltModel, config: TrainConfig,
                optimizer: torch.optim.Optimizer, scaler: Any, state: LoopState, metadata: dict[str, Any]) -> None:
    """Write the resume checkpoint atomically (rank 0 only; see the module docstring).

    Args:
        path: usually `resume_path` of the output.
        model: the model being trained (not the DDP wrapper).
        built: its `BuiltModel` (templates, arch, info).
        config: the run's config (saved so that a resumption can check it).
        optimizer: the SGD optimizer.
        scaler: the AMP GradScaler or None.
        state: the loop counters.
        metadata: as for `final_checkpoint`.
    """
    ckpt = final_checkpoint(model, built, config, metadata)
    ckpt["train"] = {
        "version": RESUME_VERSION,
        "config": config.to_dict(),
        "info": dict(built.info),
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "loop": state.to_dict(),
    }
    save_checkpoint(ckpt, path)


@dataclass
class Resumed:
    """A run read back from its resume checkpoint."""

    built: BuiltModel
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    state: LoopState


def load_resume(path: str | os.PathLike, config: TrainConfig) -> Resumed:
    """Read a resume checkpoint and rebuild the model exactly as it was saved.

    Args:
        path: the resume checkpoint.
        config: the new run's config; it must equal the saved one except for
            ``TrainConfig.RESUMABLE_CHANGES`` (epochs, max_steps, patience, device, ...).

    Returns:
        A `Resumed` whose model (on the CPU) holds the saved converted state.

    Raises:
        TrainError: not a resume checkpoint, a newer format, or a config that changes the run.
    """
    ckpt = load_checkpoint(path)
    extra = ckpt.get("train") if isinstance(ckpt, dict) else None
    if not isinstance(extra, dict) or "loop" not in extra:
        raise TrainError(f"{path}: not an fzpack training checkpoint (no 'train' entry)")
    if extra.get("version", 0) > RESUME_VERSION:
        raise TrainError(f"{path}: resume format {extra.get('version')} is newer than this fzpack reads")
    saved = TrainConfig.from_dict(extra["config"]).resolve()
    changed = saved.differences(config, ignore=TrainConfig.RESUMABLE_CHANGES)
    if changed:
        raise TrainError(f"{path}: cannot resume with a different {', '.join(changed)} "
                         f"(only {', '.join(TrainConfig.RESUMABLE_CHANGES)} may change)")
    info = frozen_info(ckpt)
    if info is None:
        raise TrainError(f"{path}: the checkpoint has no 'fzpack' entry")
    built = rebuild_model(ckpt["state_dict"], info, config.method, extra.get("info") or {})
    try:
        built.model.load_state_dict(extra["model"])
    except RuntimeError as e:
        raise TrainError(f"{path}: saved training state does not fit the model: {str(e).splitlines()[0]}") from e
    loop = dict(extra["loop"])
    state = LoopState(**{k: loop[k] for k in LoopState.__dataclass_fields__ if k in loop})
    return Resumed(built, extra["optimizer"], extra.get("scaler"), state)
