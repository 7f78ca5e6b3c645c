"""Frozen-weight Linear and Conv2d: a regenerated frozen buffer + a Parameter of the K trained entries.

The effective weight is assembled in ``forward`` (FreezeNet section 3.2, Table 1): the dense
weight takes part in the forward and backward pass, so gradients flow through the frozen
entries, but only the K trained entries are a Parameter. Gradients, optimizer state and weight
decay therefore exist for those K numbers only, and the frozen entries can never drift from
their regeneration: they are a buffer nothing writes to.

One class serves every family, by two switches:

* ``scale_mode``: how the frozen part is scaled. ``"none"``: not at all (FreezeNet, SNIP, LC).
  ``"decay"``: FreezeNet-WD (paper section 4.2, weight decay on the frozen weights too) kept
  regenerable by an exact per-tensor scalar: SGD with momentum shrinks every frozen entry by
  the same factor each step, so a float32 scalar (and a scalar momentum) tracks them exactly.
  ``"train"``: DCTpS's alpha (dctps.md eq. 3), a trainable float32 scalar.
* ``additive``: trained entries are ``frozen value + trained`` (DCTpS: ``W = alpha*D + S``, S
  zero off its support) instead of free values (FreezeNet).

The assembly uses exactly the float32 operations the `.fzp` reader uses (formats/fzpack-v1.md
section 4.2): ``R = (R32 * scale).to(dtype)``, trained entries ``R[i] + v`` or ``v``. So a
model that is saved, compressed and restored computes bit for bit what it computed before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.checkpoint import FrozenTensor
from fzpack.errors import FzpackError
from fzpack.generator import generate

SCALE_MODES = ("none", "decay", "train")


class FrozenWeight(nn.Module):
    """The weight of one layer: ``frozen`` (buffer) with ``trained`` written (or added) at ``index``.

    Args:
        ft: init spec + mask (True = trained) of this weight, and its scale / delta if any.
        seed: the checkpoint seed; ``name`` keys the generator stream (the state-dict name).
        values: current full weight; for a replacing layer its masked entries become the initial
            trained values (an additive layer starts from ``ft.delta``, else zeros).
        banks: bank name -> length, for specs that draw from a bank.
        scale_mode: ``"none"``, ``"decay"`` (FreezeNet-WD) or ``"train"`` (DCTpS alpha); a
            template that carries a scale but asks for ``"none"`` keeps it fixed.
        additive: trained entries are offsets added to the frozen value (DCTpS).
    """

    def __init__(self, ft: FrozenTensor, seed: int, name: str, values: torch.Tensor, *,
                 banks: dict[str, int] | None = None, scale_mode: str = "none", additive: bool = False) -> None:
        super().__init__()
        if scale_mode not in SCALE_MODES:
            raise FzpackError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        shape = tuple(values.shape)
        self.name, self.shape, self.dtype = name, shape, values.dtype
        self.scale_mode, self.additive = scale_mode, additive
        self.scaled = scale_mode != "none" or ft.scale is not None
        # A scaled part is kept in float32 and rounded after the multiply, as the reader does.
        gen_dtype = torch.float32 if self.scaled else values.dtype
        frozen = generate(ft.spec, seed, name, shape, dtype=gen_dtype, device=values.device, banks=banks)
        index = torch.nonzero(ft.mask.reshape(-1).to(values.device)).reshape(-1)
        self.register_buffer("frozen", frozen, persistent=False)  # regenerated, never saved
        self.register_buffer("index", index)
        if additive:
            init = ft.delta if ft.delta is not None else torch.zeros(index.numel(), dtype=values.dtype)
            self.trained = nn.Parameter(init.detach().to(values.device, values.dtype).reshape(-1).clone())
        else:
            self.trained = nn.Parameter(values.detach().reshape(-1)[index].clone())
        scale = torch.tensor(1.0 if ft.scale is None else ft.scale, dtype=torch.float32, device=values.device)
        if scale_mode == "train":
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.register_buffer("scale_momentum", torch.zeros((), dtype=torch.float32, device=values.device))
        self.register_buffer("decay_steps", torch.zeros((), dtype=torch.int64, device=values.device))

    @property
    def decay_frozen(self) -> bool:
        return self.scale_mode == "decay"

    def forward(self) -> torch.Tensor:
        base = (self.frozen * self.scale).to(self.dtype) if self.scaled else self.frozen
        if self.index.numel() == 0:
            return base  # an entirely frozen weight (LC spatial convs): no copy
        flat = base.reshape(-1)
        vals = flat[self.index] + self.trained if self.additive else self.trained
        return flat.index_put((self.index,), vals).reshape(self.shape)

    @torch.no_grad()
    def decay_(self, lr: float, weight_decay: float, momentum: float = 0.0, dampening: float = 0.0) -> None:
        """Apply SGD's weight-decay step to the frozen part, exactly as torch.optim.SGD would.

        The frozen entries get no gradient, so SGD's update for them is d = wd * s * W0 and the
        momentum buffer stays proportional to W0: buf = c * W0. Tracking the scalars s and c in
        float32 reproduces the dense update up to float32 rounding of one product per step.
        """
        if self.scale_mode != "decay" or weight_decay == 0:
            return
        d = self.scale * weight_decay
        if momentum:
            if int(self.decay_steps) == 0:
                self.scale_momentum.copy_(d)
            else:
                self.scale_momentum.mul_(momentum).add_(d * (1 - dampening))
            d = self.scale_momentum
        self.scale.sub_(d * lr)
        self.decay_steps.add_(1)

    def dense(self) -> torch.Tensor:
        """The effective weight as a plain tensor (what the checkpoint's state dict holds)."""
        with torch.no_grad():
            out = self.forward().detach()
            return out.clone() if out is self.frozen else out

    def frozen_tensor(self, template: FrozenTensor) -> FrozenTensor:
        """The convention entry for this weight: mask, current scale, trained offsets."""
        mask = torch.zeros(self.frozen.numel(), dtype=torch.bool, device=self.index.device)
        mask[self.index] = True
        scale = float(self.scale.detach()) if self.scaled else None
        delta = self.trained.detach().cpu().clone() if self.additive else None
        return FrozenTensor(spec=template.spec, mask=mask.reshape(self.shape).cpu(), scheme=template.scheme, scale=scale,
                            delta=delta)


class _FrozenWeightLayer:
    """Shared part of the frozen layers: ``weight`` is assembled from the FrozenWeight on access."""

    frozen_weight: FrozenWeight

    def _adopt(self, base: nn.Module, fw: FrozenWeight, attrs: tuple[str, ...]) -> None:
        nn.Module.__init__(self)  # type: ignore[arg-type]
        for attr in attrs:
            setattr(self, attr, getattr(base, attr))
        self.frozen_weight = fw
        self.bias = base.bias

    @property
    def weight(self) -> torch.Tensor:
        return self.frozen_weight()


class FrozenLinear(_FrozenWeightLayer, nn.Linear):
    """nn.Linear whose weight is a :class:`FrozenWeight`; ``weight`` stays readable as a tensor."""

    def __init__(self, base: nn.Linear, fw: FrozenWeight) -> None:
        self._adopt(base, fw, ("in_features", "out_features"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.frozen_weight(), self.bias)


class FrozenConv2d(_FrozenWeightLayer, nn.Conv2d):
    """nn.Conv2d whose weight is a :class:`FrozenWeight` (all conv options kept)."""

    def __init__(self, base: nn.Conv2d, fw: FrozenWeight) -> None:
        self._adopt(base, fw, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                               "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.frozen_weight(), self.bias)
