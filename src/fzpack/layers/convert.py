"""Turn a plain model into its frozen-weight twin and back (the training-side view of a FreezeNet)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fzpack.checkpoint import FrozenTensor
from fzpack.errors import FzpackError
from fzpack.layers.frozen import FrozenConv2d, FrozenLinear, FrozenWeight


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parts = path.split(".")
    mod = model
    for p in parts[:-1]:
        mod = getattr(mod, p)
    return mod, parts[-1]


def convert_(model: nn.Module, frozen: Mapping[str, FrozenTensor], *, seed: int, banks: dict[str, int] | None = None,
             scale_mode: str = "none", additive: bool = False, decay_frozen: bool = False) -> nn.Module:
    """Replace each Linear/Conv2d whose weight is in ``frozen`` by its frozen-weight twin, in place.

    The layer's current weight supplies the initial trained values; its frozen entries are
    regenerated from the seed (they are *not* read from the weight, so the frozen part is exact by
    construction). Biases and every other parameter are kept as they are.

    Args:
        model: the plain model (after ``freeze_`` or loaded from a checkpoint).
        frozen: ``{"fc1.weight": FrozenTensor, ...}`` (init spec + mask).
        seed: the checkpoint's seed.
        banks: bank name -> length, for tensors drawn from a shared bank (LCResNet).
        scale_mode: ``"none"``, ``"decay"`` (FreezeNet-WD: weight decay also shrinks the frozen
            part, exact scale) or ``"train"`` (DCTpS: a trainable alpha per layer).
        additive: trained entries are offsets added to the frozen value (DCTpS); a template with
            a ``delta`` is always additive.
        decay_frozen: shorthand for ``scale_mode="decay"``.

    Returns:
        ``model`` itself, whose ``parameters()`` now hold only trained entries, biases and BN.

    Example:
        >>> frozen = freeze_(model, batch, rate=0.99, seed=1)
        >>> convert_(model, frozen, seed=1)
        >>> sum(p.numel() for p in model.parameters())   # K + biases
    """
    for name, ft in frozen.items():
        if not name.endswith(".weight"):
            raise FzpackError(f"{name!r}: only module weights can be frozen")
        parent, attr = _parent(model, name[: -len(".weight")])
        base = getattr(parent, attr)
        if isinstance(base, (FrozenLinear, FrozenConv2d)):
            raise FzpackError(f"{name!r} is already converted")
        if type(base) not in (nn.Linear, nn.Conv2d):
            raise FzpackError(f"{name!r} belongs to a {type(base).__name__}; frozen layers exist for Linear and Conv2d")
        fw = FrozenWeight(ft, seed, name, base.weight.detach(), banks=banks, scale_mode="decay" if decay_frozen else scale_mode,
                          additive=additive or ft.delta is not None)
        setattr(parent, attr, FrozenLinear(base, fw) if isinstance(base, nn.Linear) else FrozenConv2d(base, fw))
    return model


def frozen_weights(model: nn.Module) -> dict[str, FrozenWeight]:
    """``{"fc1.weight": FrozenWeight, ...}`` for every converted layer, in module order."""
    return {f"{n}.weight" if n else "weight": m.frozen_weight for n, m in model.named_modules()
            if isinstance(m, (FrozenLinear, FrozenConv2d))}


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's state dict (standard names, assembled weights), on CPU.

    This is what the checkpoint convention stores, so a converted model saves to the same
    `model.pt` a plain training loop would write.
    """
    out: dict[str, torch.Tensor] = {}
    for mname, mod in model.named_modules():
        prefix = f"{mname}." if mname else ""
        if isinstance(mod, FrozenWeight):
            continue
        if isinstance(mod, (FrozenLinear, FrozenConv2d)):
            out[prefix + "weight"] = mod.frozen_weight.dense().cpu()
        for pname, p in mod.named_parameters(recurse=False):
            out[prefix + pname] = p.detach().cpu().clone()
        for bname, b in mod.named_buffers(recurse=False):
            if bname not in mod._non_persistent_buffers_set:
                out[prefix + bname] = b.detach().cpu().clone()
    return _in_plain_order(model, out)


def _in_plain_order(model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Order keys as the unconverted model's state_dict would (weight before bias per module)."""
    order: list[str] = []
    for mname, mod in model.named_modules():
        if isinstance(mod, FrozenWeight):
            continue
        prefix = f"{mname}." if mname else ""
        names = (["weight"] if isinstance(mod, (FrozenLinear, FrozenConv2d)) else [])
        names += [n for n, _ in mod.named_parameters(recurse=False)]
        names += [n for n, _ in mod.named_buffers(recurse=False) if n not in mod._non_persistent_buffers_set]
        order += [prefix + n for n in names if prefix + n in sd]
    return {k: sd[k] for k in order}


def frozen_entries(model: nn.Module, templates: Mapping[str, FrozenTensor]) -> dict[str, FrozenTensor]:
    """Convention entries (init spec, mask, scale) of a converted model, for ``make_checkpoint``."""
    return {name: fw.frozen_tensor(templates[name]) for name, fw in frozen_weights(model).items()}


@torch.no_grad()
def decay_frozen_(model: nn.Module, lr: float, weight_decay: float, momentum: float = 0.0, dampening: float = 0.0) -> None:
    """FreezeNet-WD: one SGD weight-decay step on every decaying frozen part."""
    for fw in frozen_weights(model).values():
        fw.decay_(lr, weight_decay, momentum, dampening)
