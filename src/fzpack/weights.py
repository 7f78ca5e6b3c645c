"""Which weights the families act on: the ``.weight`` of every Linear and Conv2d (FreezeNet section 3)."""

from __future__ import annotations

from torch import nn

__all__ = ["PRUNABLE_TYPES", "prunable_weights"]

# Module types whose `.weight` takes part in the selection. Extend here when a family needs it.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def prunable_weights(model: nn.Module) -> list[str]:
    """Names of the weights the mask covers: the ``.weight`` of every Linear and Conv2d.

    Args:
        model: any module.

    Returns:
        State-dict names in module registration order (a parameter shared by two layers is
        listed once, under its first name).

    Example:
        >>> from fzpack.models import create_model
        >>> prunable_weights(create_model("lenet5-caffe", device="meta"))
        ['conv1.weight', 'conv2.weight', 'fc1.weight', 'fc2.weight']
    """
    names: list[str] = []
    seen: set[int] = set()
    for mname, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and getattr(module, "weight", None) is not None:
            if id(module.weight) not in seen:
                seen.add(id(module.weight))
                names.append(f"{mname}.weight" if mname else "weight")
    return names
