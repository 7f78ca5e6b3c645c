"""DCT plus Sparse (DCTpS, Price & Tanner) and its Sparse baseline: ``W = alpha * D + S``.

Paper: ../shared/papers/dctps.md, section 4, eq. (3). Every Linear and Conv2d weight becomes

* ``D``: the orthonormal DCT-II matrix in the reference code's layout (formats/generator-v1.md
  section 6.7, ``InitSpec("dct")``): regenerated bit for bit, never stored;
* ``alpha``: one trainable float32 scalar per layer, init 1 (the paper's footnote 2);
* ``S``: sparse with a fixed random support, init zero, only its nonzeros trainable.

The support is drawn from fzpack's generator, so a `.fzp` stores **no mask**: "equal per
layer" (EPL, section 4, the default) is ``random_mask(seed, name, shape, k_layer)``, "equal
per filter" (EPF, appendix A.2) is ``random_mask_rows(seed, name, shape, k_layer)``. The file
holds alpha (the tensor's exact ``scale``) and the K values of S (``ADDITIVE`` trained values);
a restored checkpoint gives back both exactly, so training can continue from it.

Sparse (EPL) (the paper's random-pruning baseline, section 5): the same support, the trained
entries start from a standard init (``init``), no offset (frozen part ``zeros``).

Allocation of the budget ``K = floor(density * |W|)``:

* EPL: ``K // L`` per layer, capped at the layer size; what is left goes to the last layers
  (from the last backwards, up to their size), as the reference code gives the remainder to
  the last layer.
* EPF: ``K // F`` per row for ``F`` rows over all layers, capped at the row size; the remainder
  adds one entry to the first rows in layer order. Within a layer this is exactly
  ``random_mask_rows``'s rule (``k // R`` per row, one more in the first ``k % R`` rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from fzpack.checkpoint import FrozenTensor, init_from_seed_
from fzpack.errors import FzpackError
from fzpack.families.registry import Batch, Family, FamilyConfig, FrozenState, TrainDefaults, register_family
from fzpack.families.saliency import freeze_rates, prunable_weights
from fzpack.generator import SCHEMES, InitSpec, random_mask, random_mask_rows
from fzpack.layers import convert_

__all__ = ["DCTpSConfig", "DCTpSFamily", "epf_counts", "epl_counts", "trainable_budget"]


@dataclass
class DCTpSConfig(FamilyConfig):
    """A DCT-plus-Sparse network (defaults: the paper's DCTpS with EPL supports).

    Attributes:
        version: schema version (1).
        density: fraction of the Linear/Conv weights that train (the paper's "density").
        seed: 32-bit seed of the supports (and of the Sparse baseline's init).
        allocation: ``epl`` (equal per layer) or ``epf`` (equal per filter / row).
        offset: ``dct`` (DCTpS) or ``none`` (the Sparse baseline: no offset, standard init).
        init: the Sparse baseline's init scheme of the trained entries.
        alpha: initial alpha of every DCTpS layer (exactly representable in float32).
    """

    version: int = 1
    density: float = 0.01
    seed: int = 0
    allocation: str = "epl"
    offset: str = "dct"
    init: str = "torch_default"
    alpha: float = 1.0

    def validate(self) -> DCTpSConfig:
        if isinstance(self.density, bool) or not isinstance(self.density, (int, float)) or not 0.0 < self.density <= 1.0:
            raise FzpackError(f"DCTpSConfig: density must be in (0, 1], got {self.density!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise FzpackError(f"DCTpSConfig: seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.allocation not in ("epl", "epf") or self.offset not in ("dct", "none"):
            raise FzpackError(f"DCTpSConfig: allocation must be epl|epf and offset dct|none, got {self.allocation!r}, {self.offset!r}")
        if self.init not in SCHEMES:
            raise FzpackError(f"DCTpSConfig: unknown init scheme {self.init!r}")
        if not math.isfinite(self.alpha) or float(torch.tensor(self.alpha, dtype=torch.float32)) != self.alpha:
            raise FzpackError(f"DCTpSConfig: alpha must be a finite float32 value, got {self.alpha!r}")
        return self


def trainable_budget(total: int, density: float) -> int:
    """K = floor(density * |W|), with ``density`` read as the decimal it prints as (0.001 is 1/1000)."""
    return math.floor(Fraction(repr(float(density))) * total)


def epl_counts(sizes: list[int], budget: int) -> list[int]:
    """Equal per layer: ``budget // L`` each, capped at the size; the rest to the last layers.

    Example:
        >>> epl_counts([500, 25000, 400000, 5000], 430)
        [107, 107, 107, 109]
    """
    per = budget // len(sizes) if sizes else 0
    counts = [min(per, s) for s in sizes]
    left = budget - sum(counts)
    for i in reversed(range(len(sizes))):
        add = min(left, sizes[i] - counts[i])
        counts[i] += add
        left -= add
    return counts


def epf_counts(shapes: list[tuple[int, ...]], budget: int) -> list[int]:
    """Equal per filter: ``budget // F`` per row over all F rows, capped; one more for the first rows.

    Example:
        >>> epf_counts([(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)], 430)
        [0, 0, 420, 10]
    """
    rows = [s[0] if s else 1 for s in shapes]
    width = [math.prod(s) // r if r else 0 for s, r in zip(shapes, rows)]
    per = budget // sum(rows) if sum(rows) else 0
    counts = [r * min(per, m) for r, m in zip(rows, width)]
    left = budget - sum(counts)
    for i, (r, m) in enumerate(zip(rows, width)):
        add = min(left, r) if per < m else 0
        counts[i] += add
        left -= add
    return counts


@register_family
class DCTpSFamily(Family):
    """DCT plus Sparse networks and the Sparse (EPL) baseline of the same paper."""

    name = "dctps"
    config_cls = DCTpSConfig
    methods = {"dctps": {"offset": "dct"}, "sparse-epl": {"offset": "none"}}
    record_keys = ("density", "allocation")
    help = {"dctps": "W = alpha * DCT + S, S on a seeded random support (no mask stored), alpha per layer",
            "sparse-epl": "the same seeded support with a standard init and no offset (the paper's Sparse (EPL))"}

    def transform_(self, model: nn.Module, config: DCTpSConfig, batch: Batch | None = None, **_: Any) -> FrozenState:
        config.validate()
        names = prunable_weights(model)
        shapes = [tuple(model.get_parameter(n).shape) for n in names]
        total = sum(math.prod(s) for s in shapes)
        budget = trainable_budget(total, config.density)
        counts = epl_counts([math.prod(s) for s in shapes], budget) if config.allocation == "epl" else epf_counts(shapes, budget)
        draw = random_mask if config.allocation == "epl" else random_mask_rows
        masks = {n: draw(config.seed, n, s, k) for n, s, k in zip(names, shapes, counts)}
        if config.offset == "dct":
            templates = {n: FrozenTensor(InitSpec("dct"), m, "dct", scale=float(config.alpha),
                                         delta=torch.zeros(int(k), dtype=model.get_parameter(n).dtype))
                         for (n, m), k in zip(masks.items(), counts)}
        else:
            init_from_seed_(model, config.seed, config.init, names=names)
            templates = {n: FrozenTensor(InitSpec("zeros"), m, "zeros") for n, m in masks.items()}
        q, q_beta = freeze_rates(masks, model)
        convert_(model, templates, seed=config.seed, **self.layer_options(config))
        for n, ft in templates.items():
            ft.delta = None  # the templates keep the init spec and mask; live values are in the model
        info: dict[str, Any] = {"density": config.density, "allocation": config.allocation, "q": q, "q_beta": q_beta,
                                "trained_weights": budget, "total_weights": total, "layer_counts": counts,
                                "trained_parameters": sum(p.numel() for p in model.parameters())}
        info["total_parameters"] = total + info["trained_parameters"] - budget
        return FrozenState(method=self.method_of(config), config=config, seed=config.seed, templates=templates, info=info,
                           record={"density": config.density, "allocation": config.allocation})

    def layer_options(self, config: DCTpSConfig) -> dict[str, Any]:
        return {"scale_mode": "train", "additive": True} if config.offset == "dct" else {}

    def train_defaults(self, config: DCTpSConfig) -> TrainDefaults:
        return TrainDefaults(optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=5e-4, lr_schedule="constant", batch_size=128,
                             source="DCTpS Table 4: Adam, lr 1e-3, wd 5e-4, batch 128, no lr decay")

    def describe(self, info: dict[str, Any]) -> list[str]:
        lines = []
        for t in info.get("tensors", []):
            if t.get("kind") == "frozen" and t["init"]["dist"] == "dct":
                rule = "per-row (EPF)" if t.get("mask") == "from seed, per row" else "per-layer (EPL)"
                support = f"{t['trained']:,} offsets on a seeded {rule} support" if t["trained"] else "no offsets (alpha only)"
                lines.append(f"  {t['name']}: alpha {t.get('scale', 1.0):.6g}, {support}")
        return lines
