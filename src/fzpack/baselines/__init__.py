"""Representations `fzpack compare` measures a checkpoint in, one module per family.

Every builder returns :class:`Artifact` objects holding the exact bytes of a file it produced
and, where the representation can be read back, a decoder from those bytes to a state dict; the
comparison measures ``len(data)`` and decodes to check losslessness. Nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]


@dataclass
class Subject:
    """What is being compared: the checkpoint, its state dict and (if frozen) masks.

    ``masks`` holds the trained-entry mask of each frozen tensor; ``pruned`` is True when every
    frozen (untrained) entry is zero (SNIP), so a sparse format alone restores the weights.
    """

    obj: Any
    state_dict: StateDict
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    method: str | None = None
    pruned: bool = False

    @property
    def frozen(self) -> bool:
        return bool(self.masks)


@dataclass
class Artifact:
    """One produced representation: its bytes and how to read them back.

    Attributes:
        key: stable id (JSON, file name in ``--keep``).
        label: what the table shows.
        filename: name under the keep directory.
        data: the exact bytes of the file.
        decode: bytes -> state dict, or None when the bytes alone cannot be read back.
        lossy_codec: True for fzpack's opt-in lossy codecs: restorable, within a documented bound.
        note: said below the table.
    """

    key: str
    label: str
    filename: str
    data: bytes
    decode: Callable[[bytes], StateDict] | None = None
    lossy_codec: bool = False
    note: str = ""


Builder = Callable[[Subject], list[Artifact]]


def state_dict_of(obj: Any) -> StateDict:
    """The tensors a checkpoint's network is made of.

    ``obj["state_dict"]`` for the fzpack convention (or any dict holding one); the dict itself
    for a flat name -> tensor map; otherwise every tensor in the nesting, keyed by its path.

    Example:
        >>> state_dict_of({"model": {"w": torch.ones(2)}, "epoch": 3})
        {'model/w': tensor([1., 1.])}
    """
    if isinstance(obj, dict):
        sd = obj.get("state_dict")
        if isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
            return dict(sd)
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    out: StateDict = {}
    _collect(obj, "", out)
    return out


def _collect(obj: Any, path: str, out: StateDict) -> None:
    if isinstance(obj, torch.Tensor):
        out.setdefault(path or "tensor", obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _collect(v, f"{path}/{k}" if path else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _collect(v, f"{path}/{i}" if path else str(i), out)
