"""Training methods; `saliency` holds the SNIP / FreezeNet mask selection."""

from __future__ import annotations

from fzpack.methods.saliency import (
    PRUNABLE_TYPES,
    freeze_rates,
    num_trainable,
    prunable_weights,
    saliency_scores,
    select_trainable,
)

__all__ = [
    "PRUNABLE_TYPES",
    "freeze_rates",
    "num_trainable",
    "prunable_weights",
    "saliency_scores",
    "select_trainable",
]
