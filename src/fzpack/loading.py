"""Build a ready-to-use nn.Module from a checkpoint or a `.fzp` file (the "time to a usable model")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenInfo, frozen_info, load_checkpoint
from fzpack.errors import CheckpointError, FzpackError
from fzpack.models.registry import create_model
from fzpack.restore import restore

__all__ = ["load_into", "load_model", "read_any"]


def read_any(src: str | os.PathLike | bytes | dict, device: str | torch.device = "cpu") -> dict:
    """A checkpoint object from a `.pt` file, a `.fzp` file or its bytes (by magic bytes), or a dict."""
    from fzpack.container.layout import MAGIC

    if isinstance(src, dict):
        return src
    if isinstance(src, (bytes, bytearray)):
        if bytes(src[:8]) != MAGIC:
            raise FzpackError("these bytes are not an fzpack file (bad magic bytes)")
        return restore(bytes(src), device=device)
    path = Path(src)
    if not path.is_file():
        raise FzpackError(f"no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    return restore(path, device=device) if head == MAGIC else load_checkpoint(path)


def _make_trainable(model: nn.Module, info: FrozenInfo | None) -> nn.Module:
    """Convert a model that holds a checkpoint's dense weights into its family's training form."""
    from fzpack.families import get_family
    from fzpack.freeze import STATE_ATTR

    if info is None:
        return model
    family = get_family(info.method)
    state = family.rebuild_(model, info, info.method if info.method in family.methods else next(iter(family.methods)))
    setattr(model, STATE_ATTR, state)
    return model


def _with_update(ckpt: Any, update: Any) -> Any:
    """The checkpoint of base ``ckpt`` carrying an update's values instead of its own (fzpack.fl)."""
    from fzpack.fl import Base, Update, decode_update

    base = Base.from_checkpoint(ckpt)
    if isinstance(update, Update):
        if update.base.fingerprint != base.fingerprint:
            raise FzpackError("the update belongs to another base than the one given")
        return base.checkpoint_with(update.values)
    if isinstance(update, (bytes, bytearray, memoryview)):
        return base.checkpoint_with(decode_update(update, base).values)
    raise FzpackError(f"update must be payload bytes or an fzpack.fl.Update, got {type(update).__name__}")


def load_model(src: str | os.PathLike | bytes | dict, *, device: str | torch.device = "cpu", frozen_layers: bool = False,
               update: Any = None) -> nn.Module:
    """Rebuild the network a convention checkpoint describes (``fzpack.arch``), weights loaded.

    Args:
        src: `model.pt`, `model.fzp` (path or bytes) or a checkpoint dict with ``fzpack.arch`` set.
        device: where the model lives (a `.fzp` regenerates its frozen weights there).
        frozen_layers: return the family's training form (only trained entries, alphas, ... are
            parameters), ready to continue training; default a plain module for inference.
        update: a federated update payload (bytes) or ``fzpack.fl.Update`` for the base ``src``:
            the model gets its values instead of the base's own (formats/fl-update-v1.md), so a
            client that joins late downloads the base once and the current values, never dense
            weights.

    Returns:
        The module in eval mode.

    Example:
        >>> model = fzpack.load_model("model.fzp")
        >>> model(x).argmax(1)
        >>> model = fzpack.load_model(base_bytes, update=latest_payload)
    """
    ckpt = read_any(src, device)
    if update is not None:
        ckpt = _with_update(ckpt, update)
    info = frozen_info(ckpt)
    arch = info.arch if info else None
    if not arch:
        raise CheckpointError("the checkpoint names no architecture ('fzpack.arch'); build the model yourself "
                              "and call fzpack.load_into(model, src)")
    config = dict(arch.get("config") or {})
    # A checkpoint we read ourselves owns its tensors: build the module on "meta" and adopt them
    # (assign=True) instead of drawing a random init only to overwrite it - on VGG16-D that init
    # costs more than reading the file. A caller's dict is copied into a normally built module,
    # never aliased.
    own = not isinstance(src, dict)
    model = create_model(arch["name"], device="meta" if own else "cpu", **config)
    try:
        model.load_state_dict(ckpt["state_dict"], assign=own)
    except RuntimeError as e:
        raise CheckpointError(f"state dict does not fit {arch['name']}: {str(e).splitlines()[0]}") from e
    if own and any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # a tensor the state dict does not hold (e.g. a non-persistent buffer): build it normally
        model = create_model(arch["name"], **config)
        model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    if frozen_layers:
        _make_trainable(model, info)
    return model.eval()


def load_into(module: nn.Module, src: str | os.PathLike | bytes | dict, *, device: str | torch.device | None = None,
              trainable: bool = False, strict: bool = True, update: Any = None) -> nn.Module:
    """Load a checkpoint or `.fzp` into a module you built yourself (one not in fzpack's registry).

    Args:
        module: a plain module of the saved architecture (not frozen yet).
        src: `model.fzp` / `model.pt` (path or bytes) or a checkpoint dict, e.g. from ``fzpack.save``.
        device: where to regenerate and place the weights (default: the module's device).
        trainable: also convert the module into its family's training form with the restored
            masks, scales and offsets (``fzpack.save`` of it continues the same checkpoint).
        strict: passed to ``load_state_dict``.
        update: a federated update payload (bytes) or ``fzpack.fl.Update`` for the base ``src``:
            load its values instead of the base's own (see ``load_model``).

    Returns:
        ``module``, with every weight bit-identical to the saved ones.

    Example:
        >>> model = fzpack.load_into(MyNet(), "model.fzp")
        >>> model = fzpack.load_into(MyNet(), "model.fzp", trainable=True)   # continue training
        >>> model = fzpack.load_into(MyNet(), base_bytes, update=payload, trainable=True)  # a late FL client
    """
    from fzpack.freeze import frozen_state

    if frozen_state(module) is not None:
        raise FzpackError("load_into needs a plain module; this one is already frozen (build a fresh one)")
    if device is None:
        first = next(iter((*module.parameters(), *module.buffers())), None)
        device = first.device if first is not None else "cpu"
    ckpt = read_any(src, device)
    if update is not None:
        ckpt = _with_update(ckpt, update)
    sd = ckpt.get("state_dict") if isinstance(ckpt, dict) and "state_dict" in ckpt else ckpt
    if not isinstance(sd, dict):
        raise CheckpointError("the checkpoint holds no state dict")
    try:
        module.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"state dict does not fit this module: {str(e).splitlines()[0]}") from e
    module.to(device)
    if trainable:
        _make_trainable(module, frozen_info(ckpt))
    return module
