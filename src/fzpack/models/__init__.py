"""Model zoo: a registry of the architectures the FreezeNet paper evaluates.

Use `create_model(name, **config)`; `list_models()` shows the names and `model_info(name)`
the paper's parameter counts. To add a family, write ``<family>.py`` with `register_model`
decorators and import it below; the registry tests pick it up automatically.
"""

from __future__ import annotations

from fzpack.models.registry import (
    ModelError,
    ModelInfo,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)

# Importing a family module registers its models; one line per family.
from fzpack.models import lenet  # noqa: E402,F401  (import for its side effect)
from fzpack.models import vgg  # noqa: E402,F401
from fzpack.models import resnet  # noqa: E402,F401
from fzpack.models import lcresnet  # noqa: E402,F401

__all__ = [
    "ModelError",
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
