"""Build a ready-to-use nn.Module from a checkpoint or a `.fzp` file (the "time to a usable model")."""

from __future__ import annotations

import os
from pathlib import Path
import torch
from torch import nn

from fzpack.checkpoint import frozen_info, load_checkpoint
from fzpack.errors import CheckpointError
from fzpack.layers import convert_
from fzpack.models.registry import create_model
from fzpack.restore import restore


def read_any(src: str | os.PathLike | dict, device: str | torch.device = "cpu") -> dict:
    """A checkpoint object from a `.pt` file, a `.fzp` file (by magic bytes) or a dict."""
    if isinstance(src, dict):
        return src
    path = Path(src)
    with open(path, "rb") as f:
        head = f.read(8)
    from fzpack.container.layout import MAGIC

    return restore(path, device=device) if head == MAGIC else load_checkpoint(path)


def load_model(src: str | os.PathLike | dict, *, device: str | torch.device = "cpu", frozen_layers: bool = False) -> nn.Module:
    """Rebuild the network a convention checkpoint describes, weights loaded.

    Args:
        src: `model.pt`, `model.fzp` or a checkpoint dict with ``fzpack.arch`` set.
        device: where the model lives (a `.fzp` regenerates its frozen weights there).
        frozen_layers: return the frozen-weight twin (only trained entries are parameters),
            ready to continue training; default a plain module for inference.

    Returns:
        The module in eval mode.

    Example:
        >>> model = fzpack.load_model("model.fzp")
        >>> model(x).argmax(1)
    """
    ckpt = read_any(src, device)
    info = frozen_info(ckpt)
    arch = info.arch if info else None
    if not arch:
        raise CheckpointError("the checkpoint names no architecture ('fzpack.arch'); build the model yourself "
                              "and call model.load_state_dict(ckpt['state_dict'])")
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
    if frozen_layers and info and info.tensors:
        convert_(model, info.tensors, seed=info.seed, banks=info.banks)
    return model.eval()

