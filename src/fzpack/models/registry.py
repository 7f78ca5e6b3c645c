"""A small timm-style model registry: families register constructors, users call `create_model`.

A family module (``lenet.py``, later ``vgg.py``, ``resnet.py``) decorates each architecture with
`register_model`, giving its name and the parameter count the paper reports for the default
configuration. `create_model` then builds any registered network by name with keyword overrides,
and the tests check every registered count against the real module, so a new family only needs
its file, one import line in ``fzpack/models/__init__.py`` and the paper's numbers.

Construction never touches PyTorch's global RNG: modules are built on the ``meta`` device
(nothing is allocated or drawn), materialised with ``to_empty`` and then filled with PyTorch's
default init drawn from an explicit `torch.Generator`. The frozen FreezeNet init itself comes
from `fzpack.generator` (seed + parameter name), applied by the trainer, not here.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from fzpack.errors import FzpackError

__all__ = [
    "ModelError",
    "ModelInfo",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "count_parameters",
]


class ModelError(FzpackError):
    """An unknown model name, a bad configuration, or a module the factory cannot initialise."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture.

    ``params`` and ``biases`` are the paper's counts for ``default_config`` (``biases`` counts
    every non-weight parameter: biases and, for BN networks, BatchNorm affine parameters).
    """

    name: str
    family: str
    params: int
    biases: int
    default_config: dict[str, Any]
    description: str
    reference: str
    constructor: Callable[..., nn.Module] = field(repr=False, compare=False)


_T = TypeVar("_T", bound=Callable[..., nn.Module])
_REGISTRY: dict[str, ModelInfo] = {}

# Modules whose own reset_parameters draws no random numbers (constants only), so it is safe
# to call after to_empty. Anything else with parameters must be handled explicitly below, or
# create_model refuses it rather than silently consuming the global RNG.
_RNG_FREE_RESET = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


def register_model(name: str, *, params: int, biases: int, reference: str = "") -> Callable[[_T], _T]:
    """Register a model constructor (a class or a factory function) under ``name``.

    Args:
        name: registry key, lower case with dashes, e.g. ``"lenet5-caffe"``.
        params: total parameter count of the default configuration, as the paper reports it.
        biases: the non-weight part of ``params`` (biases + BatchNorm affine parameters).
        reference: where the numbers come from, e.g. ``"FreezeNet Fig. S10"``.

    Returns:
        A decorator that records the constructor and returns it unchanged.

    Example:
        >>> @register_model("tiny-mlp", params=50, biases=10)   # doctest: +SKIP
        ... class TinyMLP(nn.Module): ...
    """

    def decorator(constructor: _T) -> _T:
        if name in _REGISTRY:
            raise ModelError(f"model {name!r} is registered twice")
        doc = inspect.getdoc(constructor) or ""
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=constructor.__module__.rsplit(".", 1)[-1],
            params=params,
            biases=biases,
            default_config=_signature_defaults(constructor),
            description=doc.splitlines()[0] if doc else "",
            reference=reference,
            constructor=constructor,
        )
        return constructor

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Names of all registered models, sorted; ``pattern`` is an optional fnmatch filter.

    Args:
        pattern: shell-style wildcard such as ``"lenet*"``; None lists everything.

    Returns:
        Sorted list of registry names.

    Example:
        >>> "lenet5-caffe" in list_models("lenet*")
        True
    """
    import fnmatch

    names = sorted(_REGISTRY)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``: expected parameter counts, default config, reference.

    Args:
        name: a name from `list_models`.

    Returns:
        The `ModelInfo` record.

    Example:
        >>> model_info("lenet-300-100").params
        266610
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    **config: Any,
) -> nn.Module:
    """Build a registered model with PyTorch's default init drawn from an explicit generator.

    Args:
        name: a name from `list_models`.
        device: where the parameters live; ``"meta"`` builds a shape-only model (no memory,
            no init) which is enough to count parameters or read state_dict names.
        dtype: optional floating dtype for the parameters (default: float32).
        generator: CPU `torch.Generator` for the init; None means a fresh one seeded with 0,
            so two calls give identical models and the global RNG is never used.
        **config: constructor keywords, e.g. ``num_classes=100``; see ``model_info(name).default_config``.

    Returns:
        A plain `nn.Module` in training mode with standard state_dict names (``conv1.weight``, ...).

    Example:
        >>> model = create_model("lenet5-caffe", num_classes=10)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    info = model_info(name)
    unknown = sorted(set(config) - set(info.default_config))
    if unknown:
        raise ModelError(
            f"{name}: unknown config key(s) {', '.join(unknown)}; accepted: {', '.join(info.default_config)}"
        )
    # Building on "meta" allocates nothing and, crucially, runs no RNG-consuming reset.
    with torch.device("meta"):
        try:
            model = info.constructor(**config)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{name}: invalid config {config}: {exc}") from None
    if torch.device(device).type == "meta":
        return model if dtype is None else model.to(dtype=dtype)
    model.to_empty(device="cpu")
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    _init_torch_default(model, generator)
    return model.to(device=device, dtype=dtype)


def count_parameters(model: nn.Module) -> int:
    """Total number of parameter elements (shared parameters counted once).

    Args:
        model: any module, also on the ``meta`` device.

    Returns:
        Sum of ``numel`` over ``model.parameters()``.

    Example:
        >>> count_parameters(create_model("lenet-300-100", device="meta"))
        266610
    """
    return sum(p.numel() for p in model.parameters())


def _signature_defaults(constructor: Callable[..., nn.Module]) -> dict[str, Any]:
    """Keyword defaults of the constructor: the registry's notion of the default config."""
    sig = inspect.signature(constructor)
    config: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is param.empty:
            raise ModelError(f"{constructor.__qualname__}: config key {pname!r} needs a default")
        config[pname] = param.default
    return config


@torch.no_grad()
def _init_torch_default(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's own default init (Linear/Conv reset_parameters), but from ``generator``.

    Weights: kaiming_uniform(a=sqrt(5)), i.e. U[-1/sqrt(fan_in), 1/sqrt(fan_in)]; biases:
    U[-1/sqrt(fan_in), 1/sqrt(fan_in)]. Modules are visited in registration order, so the
    draw order (and therefore the values) is fixed by the architecture.
    """
    done: set[int] = set()
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            weight = module.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            done.add(id(weight))
            if module.bias is not None:
                fan_in = weight.shape[1] * math.prod(weight.shape[2:])
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
                done.add(id(module.bias))
        elif isinstance(module, _RNG_FREE_RESET):
            # Also resets the running statistics, which to_empty left uninitialised.
            module.reset_parameters()
            done.update(id(t) for t in module.parameters(recurse=False))
            done.update(id(t) for t in module.buffers(recurse=False))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if id(t) not in done]
    if left:
        raise ModelError(
            f"create_model cannot initialise {', '.join(left)} without the global RNG; "
            "extend fzpack.models.registry._init_torch_default for this module type"
        )
