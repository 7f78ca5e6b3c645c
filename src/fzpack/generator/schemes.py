"""Initialization schemes -> InitSpec, with torch.nn.init's fan and gain formulas.

Parameters are computed in Python float64 with +, -, *, / and math.sqrt only (all correctly
rounded, so every platform gets the same double) following the exact operation chain of
torch.nn.init, then rounded once to float32 by InitSpec. The frozen values themselves then come
from the portable generator, never from torch's RNG.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Mapping, Sequence

from fzpack.errors import FzpackError
from fzpack.generator.spec import InitSpec

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise FzpackError(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise FzpackError(f"shape must not have negative dimensions, got {dims}")
    return dims


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) exactly as torch.nn.init._calculate_fan_in_and_fan_out.

    Args:
        shape: weight shape (out, in, *kernel), at least 2 dimensions.

    Returns:
        (in * prod(kernel), out * prod(kernel)).

    Example:
        >>> fans((64, 3, 3, 3))
        (27, 576)
    """
    dims = check_shape(shape)
    if len(dims) < 2:
        raise FzpackError(f"fan in and fan out need a tensor of >= 2 dimensions, got shape {dims}")
    receptive = 1
    for d in dims[2:]:
        receptive *= d
    return dims[1] * receptive, dims[0] * receptive


def _positive(fan: int, what: str) -> int:
    if fan <= 0:
        raise FzpackError(f"{what} is {fan}; the scheme's scale is undefined for an empty tensor")
    return fan


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain, with negative_slope**2 written as a product."""
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise FzpackError(f"negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise FzpackError(f"unsupported nonlinearity {nonlinearity!r}")


def _fan(shape: Sequence[int], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise FzpackError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(shape)
    return _positive(fan_in if mode == "fan_in" else fan_out, mode)


def _xavier_std(shape: Sequence[int], gain: float) -> float:
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / float(_positive(fan_in + fan_out, "fan_in + fan_out")))


def xavier_normal(shape: Sequence[int], gain: float = 1.0) -> InitSpec:
    """N(0, gain * sqrt(2 / (fan_in + fan_out))): FreezeNet's default."""
    return InitSpec("normal", 0.0, _xavier_std(shape, gain))


def xavier_uniform(shape: Sequence[int], gain: float = 1.0) -> InitSpec:
    """U(-a, a), a = sqrt(3) * gain * sqrt(2 / (fan_in + fan_out))."""
    a = math.sqrt(3.0) * _xavier_std(shape, gain)
    return InitSpec("uniform", -a, a)


def kaiming_uniform(
    shape: Sequence[int], a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> InitSpec:
    """U(-b, b), b = sqrt(3) * gain(nonlinearity, a) / sqrt(fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    bound = math.sqrt(3.0) * std
    return InitSpec("uniform", -bound, bound)


def kaiming_normal(
    shape: Sequence[int], a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> InitSpec:
    """N(0, gain(nonlinearity, a) / sqrt(fan))."""
    return InitSpec("normal", 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode)))


def torch_default(shape: Sequence[int]) -> InitSpec:
    """PyTorch's Linear/Conv weight default: kaiming_uniform(a=sqrt(5)), bound ~ 1/sqrt(fan_in)."""
    return kaiming_uniform(shape, a=math.sqrt(5))


def pm_sigma(shape: Sequence[int]) -> InitSpec:
    """+-sigma with probability 1/2 each, sigma**2 = 2 / (fan_in + fan_out) (FreezeNet section 4.5)."""
    return InitSpec("pm", _xavier_std(shape, 1.0))


def uniform(shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> InitSpec:
    """U(low, high), like torch.nn.init.uniform_ (shape only validated)."""
    check_shape(shape)
    return InitSpec("uniform", low, high)


def normal(shape: Sequence[int], mean: float = 0.0, std: float = 1.0) -> InitSpec:
    """N(mean, std), like torch.nn.init.normal_ (shape only validated)."""
    check_shape(shape)
    return InitSpec("normal", mean, std)


def zeros(shape: Sequence[int]) -> InitSpec:
    """All zeros: a pruned (SNIP) tensor's frozen part."""
    check_shape(shape)
    return InitSpec("zeros")


def bank(shape: Sequence[int], bank: str, scale: float | None = None, offset: int = 0) -> InitSpec:
    """Slice of the shared U(-1, 1) bank `bank` times `scale` (default 1 / sqrt(fan_in), LCResNet)."""
    if scale is None:
        scale = 1.0 / math.sqrt(_positive(fans(shape)[0], "fan_in"))
    else:
        check_shape(shape)
    return InitSpec("bank", scale, 0.0, bank=bank, offset=offset)


def dct(shape: Sequence[int]) -> InitSpec:
    """The orthonormal DCT-II matrix of the weight's shape (DCTpS layers; no parameters, spec 6.7)."""
    dims = check_shape(shape)
    if len(dims) < 2:
        raise FzpackError(f"dct needs a weight of at least 2 dimensions, got shape {dims}")
    return InitSpec("dct")


SCHEMES: Mapping[str, Callable[..., InitSpec]] = {
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "kaiming_uniform": kaiming_uniform,
    "kaiming_normal": kaiming_normal,
    "torch_default": torch_default,
    "pm_sigma": pm_sigma,
    "uniform": uniform,
    "normal": normal,
    "zeros": zeros,
    "bank": bank,
    "dct": dct,
}


def list_schemes() -> list[str]:
    """Names accepted by `init_spec`, sorted."""
    return sorted(SCHEMES)


def init_spec(scheme: str, shape: Sequence[int], **kw: Any) -> InitSpec:
    """The InitSpec of an initialization scheme for a tensor of `shape`.

    Args:
        scheme: one of `list_schemes()` (e.g. "xavier_normal", "kaiming_uniform", "pm_sigma").
        shape: the tensor's shape (out, in, *kernel) for fan-based schemes.
        **kw: scheme parameters (gain; a, mode, nonlinearity; low, high; mean, std; bank, scale, offset).

    Returns:
        The InitSpec, parameters rounded to float32.

    Example:
        >>> init_spec("kaiming_uniform", (10, 800), nonlinearity="relu").dist
        'uniform'
    """
    fn = SCHEMES.get(scheme)
    if fn is None:
        raise FzpackError(f"unknown init scheme {scheme!r}; expected one of {', '.join(list_schemes())}")
    try:
        return fn(shape, **kw)
    except TypeError as exc:
        raise FzpackError(f"bad parameters for init scheme {scheme!r}: {exc}") from None
