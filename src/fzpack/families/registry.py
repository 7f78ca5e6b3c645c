"""The family registry: one place per way of making a network with frozen random weights.

A *family* (FreezeNet, DCT-plus-Sparse, LCResNet, the dense baseline) owns everything that is
specific to it: its versioned config dataclass, how it turns a plain model into its training
form in place (``transform_``, torchao's ``quantize_`` style), what its checkpoint entry
records, how its layers are rebuilt from a checkpoint, its per-step hooks and its training
defaults. The trainer, the checkpoint code, ``load_model`` and the CLI look a family up by its
*method* name (``--method``) or by its config's type and never branch on method strings.

A family may serve several methods that differ only in a preset of its config (``freezenet``,
``freezenet-wd``, ``snip`` ... are presets of `FreezeNetConfig`). Adding a family is one
module with a `Family` subclass decorated with `register_family`, plus one import line in
``fzpack/families/__init__.py``; the registry tests are parametrized over `list_methods()`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from fzpack.checkpoint import FrozenInfo, FrozenTensor
from fzpack.errors import FzpackError

__all__ = ["Family", "FamilyConfig", "FrozenState", "TrainDefaults", "family_for", "get_family", "list_families",
           "list_methods", "register_family"]


class FamilyConfig:
    """Mixin for the versioned config dataclasses: plain-dict round trip with version checks."""

    version: int
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """Primitives only, safe for JSON and ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Rebuild from `to_dict`, refusing unknown keys and versions newer than this code."""
        if not isinstance(d, Mapping):
            raise FzpackError(f"{cls.__name__}: expected a dict, got {type(d).__name__}")
        version = d.get("version", cls.VERSION)
        if not isinstance(version, int) or version > cls.VERSION:
            raise FzpackError(f"{cls.__name__}: version {version!r} is newer than this fzpack ({cls.VERSION}); upgrade fzpack")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise FzpackError(f"{cls.__name__}: unknown keys {unknown}")
        return cls(**d)


@dataclass(frozen=True)
class TrainDefaults:
    """A family's optimiser settings from its paper (the trainer's values when a run sets none)."""

    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    lr_schedule: str = "step"  # step (drops at the configured points) | cosine | constant
    label_smoothing: float = 0.0
    batch_size: int | None = None  # None: the data set's default
    source: str = ""  # where the numbers come from


@dataclass
class FrozenState:
    """What a transformed model needs to be saved: attached to the root module as ``fzpack_state``.

    Attributes:
        method: the registered method name (``fzpack.method`` of the checkpoint).
        config: the family config it was transformed with.
        seed: the 32-bit seed every frozen tensor regenerates from.
        templates: convention entries at transform time (init spec, scheme), per frozen weight.
        banks: shared random banks, name -> length (LC weight sharing).
        info: primitives for reports (q, q_beta, trained counts, ...).
        record: primitives the family stores in the checkpoint's metadata (kept short: every
            `.fzp` header carries them).
    """

    method: str
    config: Any
    seed: int
    templates: dict[str, FrozenTensor] = field(default_factory=dict)
    banks: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


Batch = tuple[torch.Tensor, torch.Tensor]


class Family:
    """One family of frozen-weight networks. Subclass, set the class attributes, register."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    #: method name -> config field overrides that make the method's preset
    methods: ClassVar[dict[str, dict[str, Any]]]
    #: one line per method, for ``--help``
    help: ClassVar[dict[str, str]] = {}
    needs_batch: ClassVar[bool] = False  # transform_ needs a data batch (saliency)
    #: the metadata keys this family records in a checkpoint (`FrozenState.record`)
    record_keys: ClassVar[tuple[str, ...]] = ()

    # -- configs ------------------------------------------------------------------------------
    def config(self, method: str, **overrides: Any) -> Any:
        """The config preset of ``method`` with ``overrides`` applied."""
        if method not in self.methods:
            raise FzpackError(f"family {self.name!r} has no method {method!r}; it has {', '.join(self.methods)}")
        return self.config_cls(**{**self.methods[method], **overrides})

    def method_of(self, config: Any) -> str:
        """The method name a config stands for (the first preset it matches, else the first method)."""
        for method, preset in self.methods.items():
            if all(getattr(config, k) == v for k, v in preset.items()):
                return method
        return next(iter(self.methods))

    def config_from_train(self, method: str, options: Mapping[str, Any]) -> Any:
        """The config for a training run: the method's preset, then the run's options that the config has."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        return self.config(method, **{k: v for k, v in options.items() if k in names and v is not None and k not in self.methods[method]})

    # -- the model ----------------------------------------------------------------------------
    def transform_(self, model: nn.Module, config: Any, batch: Batch | None = None, **kwargs: Any) -> FrozenState:
        """Initialise ``model`` from the seed and convert it to its training form, in place.

        ``kwargs`` are options some families take (FreezeNet: ``loss_fn``, ``fresh_model``);
        every family accepts and ignores the others, so callers need not know which is which.
        """
        raise NotImplementedError

    def rebuild_(self, model: nn.Module, info: FrozenInfo, method: str) -> FrozenState:
        """Convert a model holding a checkpoint's dense weights into its training form, in place.

        The default converts every frozen tensor of the checkpoint with this family's layer
        options; trained values, scales and offsets come from the checkpoint itself.
        """
        from fzpack.layers import convert_

        config = self.config_from_train(method, {**info.metadata, "seed": info.seed})
        if info.tensors:
            convert_(model, info.tensors, seed=info.seed, banks=info.banks, **self.layer_options(config))
        templates = {n: FrozenTensor(f.spec, f.mask, f.scheme) for n, f in info.tensors.items()}
        record = {k: v for k, v in info.metadata.items() if k in self.record_keys}
        return FrozenState(method=method, config=config, seed=info.seed, templates=templates, banks=dict(info.banks),
                           record=record)

    def layer_options(self, config: Any) -> dict[str, Any]:
        """Keyword arguments for ``convert_`` (scale mode, additive)."""
        return {}

    # -- training hooks -----------------------------------------------------------------------
    def train_defaults(self, config: Any) -> TrainDefaults:
        return TrainDefaults()

    def regularizer(self, model: nn.Module, state: FrozenState) -> torch.Tensor | None:
        """A term added to the training loss (LC: L1 on the pointwise weights), or None."""
        return None

    def after_step(self, model: nn.Module, state: FrozenState, *, lr: float, weight_decay: float, momentum: float) -> None:
        """Called after every optimizer step (FreezeNet-WD decays its frozen part here)."""

    def finalize_(self, model: nn.Module, state: FrozenState) -> None:
        """Called once after training, before the final evaluation (LC: 1x1 magnitude pruning)."""

    def describe(self, info: Mapping[str, Any]) -> list[str]:
        """Lines for ``fzpack inspect`` about this family's parts, from the inspect dict."""
        return []


_FAMILIES: dict[str, Family] = {}
_METHODS: dict[str, Family] = {}
_F = TypeVar("_F", bound=type)


def register_family(cls: _F) -> _F:
    """Class decorator: instantiate the family and register it and its methods."""
    family = cls()
    if family.name in _FAMILIES:
        raise FzpackError(f"family {family.name!r} is registered twice")
    clash = sorted(set(family.methods) & set(_METHODS))
    if clash:
        raise FzpackError(f"methods {clash} are already registered")
    _FAMILIES[family.name] = family
    for method in family.methods:
        _METHODS[method] = family
    return cls


def list_families() -> list[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def list_methods() -> list[str]:
    """Every ``--method`` name, in registration order."""
    return list(_METHODS)


def get_family(method: str) -> Family:
    """The family serving ``method`` (a method name such as ``"snip"``, or a family name).

    Example:
        >>> get_family("freezenet-wd").name
        'freezenet'
    """
    if method in _METHODS:
        return _METHODS[method]
    if method in _FAMILIES:
        return _FAMILIES[method]
    close = difflib.get_close_matches(method, list(_METHODS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(_METHODS)}"
    raise FzpackError(f"unknown method {method!r}{hint}")


def family_for(config: Any) -> Family:
    """The family whose config class ``config`` is an instance of."""
    for family in _FAMILIES.values():
        if isinstance(config, family.config_cls):
            return family
    raise FzpackError(f"{type(config).__name__} is not the config of any registered family "
                      f"({', '.join(f.config_cls.__name__ for f in _FAMILIES.values())})")
