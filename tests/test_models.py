"""Model registry: every registered network matches the paper's parameter counts and names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fzpack.errors import FzpackError
from fzpack.methods.saliency import prunable_weights
from fzpack.models import (
    ModelError,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)

ALL_MODELS = list_models()

# Standard state_dict names per model, in order (the container stores tensors by these names).
EXPECTED_STATE = {
    "lenet-300-100": ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"],
    "lenet5-caffe": [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    ],
}

# Paper counts (FreezeNet Fig. S9 / S10), written out here rather than read from the registry.
PAPER_COUNTS = {"lenet-300-100": (266_610, 410), "lenet5-caffe": (431_080, 580)}


def _input_for(name: str, batch: int = 3) -> torch.Tensor:
    cfg = model_info(name).default_config
    return torch.zeros(batch, cfg.get("in_channels", 1), cfg.get("input_size", 28), cfg.get("input_size", 28))


def test_registry_lists_the_lenets() -> None:
    assert {"lenet-300-100", "lenet5-caffe"} <= set(ALL_MODELS)
    assert list_models("lenet5*") == ["lenet5-caffe"]
    assert ALL_MODELS == sorted(ALL_MODELS)
    for name, counts in PAPER_COUNTS.items():
        info = model_info(name)
        assert (info.params, info.biases) == counts
        assert info.family == "lenet" and info.reference


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_registry(name: str) -> None:
    info = model_info(name)
    model = create_model(name)
    assert count_parameters(model) == info.params
    weight_names = set(prunable_weights(model))
    n_other = sum(p.numel() for n, p in model.named_parameters() if n not in weight_names)
    assert n_other == info.biases


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_and_dtype(name: str) -> None:
    model = create_model(name)
    out = model(_input_for(name))
    assert out.shape == (3, model_info(name).default_config["num_classes"])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out = create_model(name, num_classes=7)(_input_for(name, batch=1))
    assert out.shape == (1, 7)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_plain_module_in_train_mode(name: str) -> None:
    model = create_model(name)
    assert type(model).__module__.startswith("fzpack.models.")
    assert isinstance(model, nn.Module) and model.training
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED_STATE))
def test_state_dict_names(name: str) -> None:
    assert list(create_model(name).state_dict()) == EXPECTED_STATE[name]


def test_every_registered_model_has_expected_names() -> None:
    # A new family must add its names here, so the file format's names stay reviewed.
    assert set(ALL_MODELS) == set(EXPECTED_STATE)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_meta_device_counts_without_memory(name: str) -> None:
    model = create_model(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == model_info(name).params


@pytest.mark.parametrize("name", ALL_MODELS)
def test_init_is_deterministic_and_leaves_global_rng_alone(name: str) -> None:
    before = torch.random.get_rng_state()
    a = create_model(name)
    b = create_model(name)
    c = create_model(name, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa[next(iter(sa))], sc[next(iter(sc))])


def test_default_init_is_pytorch_default_range() -> None:
    model = create_model("lenet-300-100")
    # kaiming_uniform(a=sqrt 5) and the bias rule both give U[-1/sqrt(fan_in), 1/sqrt(fan_in)].
    bound = 1 / 784**0.5
    for t in (model.fc1.weight, model.fc1.bias):
        assert t.abs().max() <= bound
        assert t.abs().max() > 0.9 * bound
    assert abs(model.fc1.weight.std().item() - bound / 3**0.5) < 0.05 * bound


def test_lenet5_caffe_has_no_conv_relu_by_default() -> None:
    plain = create_model("lenet5-caffe")
    relu = create_model("lenet5-caffe", conv_relu=True)
    assert count_parameters(relu) == 431_080
    relu.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    # Same weights: outputs differ only because of the extra ReLUs.
    assert not torch.allclose(plain(x), relu(x))
    conv1 = plain.conv1(x)
    assert (conv1 < 0).any()  # the activations that a ReLU would remove do exist


def test_other_input_sizes() -> None:
    model = create_model("lenet5-caffe", in_channels=3, input_size=32, num_classes=100)
    assert model.fc1.in_features == 50 * 5 * 5
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    mlp = create_model("lenet-300-100", in_channels=3, input_size=32)
    assert mlp.fc1.in_features == 3 * 32 * 32


def test_errors_are_fzpack_errors() -> None:
    with pytest.raises(ModelError, match="did you mean lenet5-caffe"):
        create_model("lenet5-cafe")
    with pytest.raises(ModelError, match="unknown config key"):
        create_model("lenet5-caffe", width=2)
    with pytest.raises(ModelError, match="input_size must be at least 16"):
        create_model("lenet5-caffe", input_size=12)
    with pytest.raises(ModelError, match="num_classes"):
        create_model("lenet-300-100", num_classes=0)
    assert issubclass(ModelError, FzpackError)


def test_register_model_rejects_duplicates_and_unseeded_modules() -> None:
    with pytest.raises(ModelError, match="registered twice"):
        register_model("lenet5-caffe", params=1, biases=0)(nn.Identity)

    from fzpack.models import registry

    @register_model("_test-embedding", params=40, biases=0)
    def make(num: int = 10) -> nn.Module:
        return nn.Sequential(nn.Embedding(num, 4))

    try:
        with pytest.raises(ModelError, match="0.weight without the global RNG"):
            create_model("_test-embedding")
        assert count_parameters(create_model("_test-embedding", device="meta")) == 40
    finally:
        del registry._REGISTRY["_test-embedding"]
