"""InitSpec validation/serialization and init schemes vs torch.nn.init's formulas."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from fzpack.errors import CheckpointError, FzpackError
from fzpack.generator import SCHEMES, InitSpec, fans, generate, init_spec, list_schemes
from fzpack.generator.constants import FLOAT_BITS, F, f32_bits

SHAPES = [(10, 800), (500, 800), (20, 1, 5, 5), (64, 3, 3, 3), (512, 512, 3, 3), (7, 5, 2, 3, 4), (50, 20, 5)]


def f32(x: float) -> float:
    return float(np.float32(x))


# ---------------------------------------------------------------- InitSpec


def test_params_are_rounded_to_float32() -> None:
    spec = InitSpec("normal", 0.1, 1 / 3)
    assert spec.p0 == f32(0.1) and spec.p1 == f32(1 / 3)
    assert isinstance(spec.p0, float) and type(spec.offset) is int


@pytest.mark.parametrize(
    "args,kwargs",
    [
        (("gauss", 0.0, 1.0), {}),
        (("normal", 0.0, -1.0), {}),
        (("normal", float("nan"), 1.0), {}),
        (("normal", 0.0, float("inf")), {}),
        (("normal", 0.0, 1e39), {}),  # overflows float32
        (("normal", 0.0, True), {}),
        (("normal", "0", 1.0), {}),
        (("uniform", 1.0, 0.0), {}),
        (("uniform", -3e38, 3e38), {}),  # width overflows float32
        (("pm", -0.5), {}),
        (("pm", 0.5, 0.1), {}),
        (("zeros", 1.0), {}),
        (("bank", 1.0), {}),  # no bank name
        (("bank", 1.0), {"bank": "b", "offset": -1}),
        (("bank", 1.0), {"bank": "b", "offset": 1.5}),
        (("bank", 1.0, 2.0), {"bank": "b"}),
        (("normal", 0.0, 1.0), {"bank": "b"}),
        (("uniform", 0.0, 1.0), {"offset": 3}),
    ],
)
def test_invalid_specs(args, kwargs) -> None:
    with pytest.raises(FzpackError):
        InitSpec(*args, **kwargs)


@pytest.mark.parametrize(
    "spec",
    [InitSpec("normal", 0.0, 0.0589), InitSpec("uniform", -0.1, 0.1), InitSpec("pm", 0.25), InitSpec("zeros"),
     InitSpec("bank", 0.04, bank="shared", offset=123456789)],
)
def test_dict_roundtrip_through_weights_only_load(spec: InitSpec) -> None:
    d = spec.to_dict()
    assert all(isinstance(v, (str, int, float)) for v in d.values())
    buf = io.BytesIO()
    torch.save({"init": d}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["init"]
    assert InitSpec.from_dict(loaded) == spec


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"p0": 0.0},
        {"dist": 3},
        {"dist": "normal", "p0": "0", "p1": 1.0},
        {"dist": "normal", "p0": 0.0, "p1": 0.1},  # 0.1 is not a float32
        {"dist": "normal", "p0": 0.0, "p1": -1.0},
        {"dist": "pm", "p0": 1.0, "extra": 1},
        {"dist": "bank", "p0": 1.0, "bank": "b", "offset": True},
    ],
)
def test_from_dict_rejects(data) -> None:
    with pytest.raises(CheckpointError):
        InitSpec.from_dict(data)


# ---------------------------------------------------------------- constants


def test_constants_match_their_formulas() -> None:
    assert F["TWO_M24"] == 2.0**-24
    assert F["LN2"] == f32(math.log(2.0))
    assert F["PIO4_STEP"] == f32(math.pi * 2.0**-23)
    assert F["C1"] == -0.5
    # the fitted coefficients stay within a few percent of the Taylor coefficients they refine
    taylor = {"L1": 2 / 3, "L2": 2 / 5, "L3": 2 / 7, "S1": -1 / 6, "S2": 1 / 120, "S3": -1 / 5040,
              "C2": 1 / 24, "C3": -1 / 720, "C4": 1 / 40320}
    for name, value in taylor.items():
        assert abs(F[name] / value - 1) < 0.04, name
    for name, (pattern, _) in FLOAT_BITS.items():
        assert f32_bits(F[name]) == pattern


# ---------------------------------------------------------------- schemes vs torch.nn.init


def _torch_std_bound(scheme: str, shape, **kw) -> tuple[str, float]:
    """(kind, value) from torch.nn.init's own private helpers and formulas."""
    t = torch.empty(shape)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(t)
    if scheme == "xavier_normal":
        return "std", kw.get("gain", 1.0) * math.sqrt(2.0 / float(fan_in + fan_out))
    if scheme == "xavier_uniform":
        return "bound", math.sqrt(3.0) * kw.get("gain", 1.0) * math.sqrt(2.0 / float(fan_in + fan_out))
    if scheme in ("kaiming_uniform", "kaiming_normal", "torch_default"):
        a = math.sqrt(5) if scheme == "torch_default" else kw.get("a", 0)
        mode = kw.get("mode", "fan_in")
        fan = nn.init._calculate_correct_fan(t, mode)
        std = nn.init.calculate_gain(kw.get("nonlinearity", "leaky_relu"), a) / math.sqrt(fan)
        return ("std", std) if scheme == "kaiming_normal" else ("bound", math.sqrt(3.0) * std)
    raise AssertionError(scheme)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "scheme,kw",
    [
        ("xavier_normal", {}),
        ("xavier_normal", {"gain": math.sqrt(2.0)}),
        ("xavier_uniform", {}),
        ("kaiming_uniform", {}),
        ("kaiming_uniform", {"a": 0.2, "mode": "fan_out"}),
        ("kaiming_uniform", {"nonlinearity": "relu"}),
        ("kaiming_normal", {}),
        ("kaiming_normal", {"nonlinearity": "tanh", "mode": "fan_out"}),
        ("torch_default", {}),
    ],
)
def test_schemes_match_torch_formulas(scheme: str, kw: dict, shape) -> None:
    spec = init_spec(scheme, shape, **kw)
    kind, value = _torch_std_bound(scheme, shape, **kw)
    if kind == "std":
        assert spec.dist == "normal" and spec.p0 == 0.0 and spec.p1 == f32(value)
    else:
        assert spec.dist == "uniform" and spec.p1 == f32(value) and spec.p0 == -f32(value)


@pytest.mark.parametrize("make", [lambda: nn.Linear(800, 500), lambda: nn.Conv2d(20, 50, 5), lambda: nn.Conv1d(3, 8, 7)])
def test_torch_default_is_modules_init(make) -> None:
    module = make()
    spec = init_spec("torch_default", tuple(module.weight.shape))
    fan_in = math.prod(module.weight.shape[1:])
    assert spec.p1 == pytest.approx(1 / math.sqrt(fan_in), rel=1e-6)
    # the module's own init lands inside the same bound
    assert float(module.weight.detach().abs().max()) <= spec.p1 * (1 + 1e-6)


def test_pm_sigma_and_fixed_schemes() -> None:
    fan_in, fan_out = fans((10, 800))
    assert (fan_in, fan_out) == (800, 10)
    assert init_spec("pm_sigma", (10, 800)) == InitSpec("pm", math.sqrt(2.0 / 810))
    assert init_spec("uniform", (3,), low=-1.0, high=2.0) == InitSpec("uniform", -1.0, 2.0)
    assert init_spec("normal", (3,)) == InitSpec("normal", 0.0, 1.0)
    assert init_spec("zeros", (4, 4)) == InitSpec("zeros")
    assert init_spec("bank", (16, 8, 3, 3), bank="b") == InitSpec("bank", 1 / math.sqrt(72), bank="b")
    assert init_spec("bank", (4,), bank="b", scale=0.5, offset=9) == InitSpec("bank", 0.5, bank="b", offset=9)


def test_registry() -> None:
    assert list_schemes() == sorted(SCHEMES)
    assert {"xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal", "torch_default", "pm_sigma",
            "uniform", "normal", "zeros", "bank"} <= set(list_schemes())


@pytest.mark.parametrize(
    "scheme,shape,kw",
    [
        ("nope", (3, 3), {}),
        ("xavier_normal", (5,), {}),
        ("xavier_normal", (0, 0), {}),
        ("kaiming_uniform", (3, 3), {"mode": "fan_sideways"}),
        ("kaiming_uniform", (3, 3), {"nonlinearity": "swish"}),
        ("kaiming_uniform", (3, 3), {"a": "x"}),
        ("xavier_normal", (3, 3), {"bogus": 1}),
        ("zeros", (-1,), {}),
    ],
)
def test_scheme_errors(scheme, shape, kw) -> None:
    with pytest.raises(FzpackError):
        init_spec(scheme, shape, **kw)


def test_scheme_values_have_the_right_spread() -> None:
    shape = (256, 256, 3, 3)
    w = generate(init_spec("xavier_normal", shape), 0, "w", shape)
    assert float(w.std()) == pytest.approx(math.sqrt(2.0 / (2 * 256 * 9)), rel=0.01)
    u = generate(init_spec("kaiming_uniform", shape, nonlinearity="relu"), 0, "u", shape)
    bound = math.sqrt(6.0 / (256 * 9))
    assert float(u.abs().max()) <= bound and float(u.abs().max()) > 0.99 * bound
