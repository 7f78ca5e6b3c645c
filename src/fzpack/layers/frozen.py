"""Frozen-weight Linear and Conv2d: a regenerated frozen buffer + a Parameter of the K trained entries.

The effective weight is assembled in ``forward`` (FreezeNet section 3.2, Table 1): the dense
weight takes part in the forward and backward pass, so gradients flow through the frozen
entries, but only the K trained entries are a Parameter. Gradients, optimizer state and weight
decay therefore exist for those K numbers only, and the frozen entries can never drift from
their regeneration: they are a buffer nothing writes to.

FreezeNet-WD (paper section 4.2: weight decay on the frozen weights too) is kept regenerable by
an exact per-tensor ``frozen_scale``: SGD with momentum shrinks every frozen entry by the same
factor each step, so a float32 scalar (and a scalar momentum) tracks them exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.checkpoint import FrozenTensor
from fzpack.generator import generate


class FrozenWeight(nn.Module):
    """The weight of one layer: ``frozen`` (buffer) with ``trained`` written at ``index``.

    Args:
        ft: init spec + mask (True = trained) of this weight.
        seed: the checkpoint seed; ``name`` keys the generator stream (the state-dict name).
        values: current full weight; its masked entries become the initial trained values.
        decay_frozen: FreezeNet-WD: the frozen part carries a decaying scale.
    """

    def __init__(self, ft: FrozenTensor, seed: int, name: str, values: torch.Tensor, *,
                 banks: dict[str, int] | None = None, decay_frozen: bool = False) -> None:
        super().__init__()
        shape = tuple(values.shape)
        frozen = generate(ft.spec, seed, name, shape, dtype=values.dtype, device=values.device, banks=banks)
        index = torch.nonzero(ft.mask.reshape(-1).to(values.device)).reshape(-1)
        self.name, self.shape = name, shape
        self.register_buffer("frozen", frozen, persistent=False)  # regenerated, never saved
        self.register_buffer("index", index)
        self.trained = nn.Parameter(values.detach().reshape(-1)[index].clone())
        scale = 1.0 if ft.scale is None else ft.scale
        self.decay_frozen = decay_frozen or ft.scale is not None
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32, device=values.device))
        self.register_buffer("scale_momentum", torch.zeros((), dtype=torch.float32, device=values.device))
        self.register_buffer("decay_steps", torch.zeros((), dtype=torch.int64, device=values.device))

    def forward(self) -> torch.Tensor:
        base = self.frozen * self.scale.to(self.frozen.dtype) if self.decay_frozen else self.frozen
        return base.reshape(-1).index_put((self.index,), self.trained).reshape(self.shape)

    @torch.no_grad()
    def decay_(self, lr: float, weight_decay: float, momentum: float = 0.0, dampening: float = 0.0) -> None:
        """Apply SGD's weight-decay step to the frozen part, exactly as torch.optim.SGD would.

        The frozen entries get no gradient, so SGD's update for them is d = wd * s * W0 and the
        momentum buffer stays proportional to W0: buf = c * W0. Tracking the scalars s and c in
        float32 reproduces the dense update up to float32 rounding of one product per step.
        """
        if not self.decay_frozen or weight_decay == 0:
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
            return self.forward().detach().clone()

    def frozen_tensor(self, template: FrozenTensor) -> FrozenTensor:
        """The convention entry for this weight, with the current scale when it decays."""
        mask = torch.zeros(self.frozen.numel(), dtype=torch.bool, device=self.index.device)
        mask[self.index] = True
        scale = float(self.scale) if self.decay_frozen else None
        return FrozenTensor(spec=template.spec, mask=mask.reshape(self.shape).cpu(), scheme=template.scheme, scale=scale)


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
