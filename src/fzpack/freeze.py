"""The one-call path for any model: ``freeze_`` it, train it as usual, ``save`` or ``compress`` it.

    model = MyNet()                                                    # any nn.Module
    fzpack.freeze_(model, fzpack.FreezeNetConfig(rate=0.99, seed=1), batch=(x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)                  # only trained entries
    ...                                                                # an ordinary loop
    fzpack.save(model, "model.pt")           # the checkpoint convention (formats/checkpoint-v1.md)
    fzpack.compress(model, "model.fzp")      # or straight to the compact file

``freeze_`` looks the family up by the config's type (`FreezeNetConfig`, `DCTpSConfig`,
`LCConfig`, `DenseConfig`), converts the model in place (torchao's ``quantize_(model, config)``
style) and attaches a `FrozenState` as ``model.fzpack_state``: what ``save`` needs to describe
the frozen part (seed, init specs, banks). The module keeps its class and state-dict names for
everything but the converted weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import make_checkpoint, save_checkpoint
from fzpack.errors import FzpackError
from fzpack.families import FrozenState, family_for
from fzpack.layers import dense_state_dict, frozen_entries

__all__ = ["checkpoint_of", "freeze_", "frozen_state", "save"]

STATE_ATTR = "fzpack_state"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def freeze_(model: nn.Module, config: Any, batch: tuple[torch.Tensor, torch.Tensor] | None = None, **kwargs: Any) -> nn.Module:
    """Turn ``model`` into its frozen-weight training form for ``config``'s family, in place.

    Args:
        model: any module with Linear / Conv2d layers (BatchNorm, residuals and the rest are
            left as they are and keep training).
        config: ``FreezeNetConfig(rate=..., seed=...)``, ``DCTpSConfig(density=...)``,
            ``LCConfig(share=...)`` or ``DenseConfig()``.
        batch: one training batch ``(inputs, targets)``; FreezeNet's saliency mask needs it.
        **kwargs: family options, e.g. ``loss_fn=`` for the saliency pass.

    Returns:
        ``model`` itself: its ``parameters()`` are now exactly what training may change.

    Example:
        >>> fzpack.freeze_(model, fzpack.FreezeNetConfig(rate=0.99, seed=1), batch=(x[:100], y[:100]))
        >>> sum(p.numel() for p in model.parameters())    # trained entries + biases + BN
    """
    model = _unwrap(model)
    if getattr(model, STATE_ATTR, None) is not None:
        raise FzpackError("this model is already frozen (it has a fzpack_state); build a fresh one to freeze it again")
    state = family_for(config).transform_(model, config, batch, **kwargs)
    setattr(model, STATE_ATTR, state)
    return model


def frozen_state(model: nn.Module) -> FrozenState | None:
    """The `FrozenState` that ``freeze_`` (or ``load_into(..., trainable=True)``) attached, or None."""
    return getattr(_unwrap(model), STATE_ATTR, None)


def checkpoint_of(model: nn.Module, *, arch: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The convention checkpoint of a model (CPU copies; the model is not modified).

    Args:
        model: a model after ``freeze_`` and training (or a plain one: then a plain state dict).
        arch: ``{"name": registry name, "config": {...}}`` so ``load_model`` can rebuild it.
        metadata: free-form primitives added to ``fzpack.metadata``.

    Returns:
        ``{"state_dict": ..., "fzpack": {...}}``, what ``fzpack.save`` writes.
    """
    model = _unwrap(model)
    state = frozen_state(model)
    if state is None:
        return {"state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
    frozen = frozen_entries(model, state.templates)
    return make_checkpoint(dense_state_dict(model), frozen, seed=state.seed, method=state.method, banks=state.banks,
                           arch=arch, metadata={**state.record, **(metadata or {})})


def save(model: nn.Module, path: str | os.PathLike, *, arch: dict[str, Any] | None = None,
         metadata: dict[str, Any] | None = None) -> Path:
    """Write the model's checkpoint (`checkpoint_of`) atomically with ``torch.save``.

    Example:
        >>> fzpack.save(model, "model.pt")      # then: fzpack compress model.pt
    """
    save_checkpoint(checkpoint_of(model, arch=arch, metadata=metadata), path)
    return Path(path)
