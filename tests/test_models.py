"""Model registry: every registered network matches the paper's parameter counts and names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fzpack.errors import FzpackError
from fzpack.families.saliency import prunable_weights
from fzpack.models import (
    ModelError,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)
from fzpack.models.lcresnet import LCBlock, LCResNet, lc_layers, lc_weight_names
from fzpack.models.resnet import CifarResNet

ALL_MODELS = list_models()
# LCResNet-20-16x{4..128} and 64x1 reach 38 M parameters and tens of GFLOP per image: the
# registry-wide tests build them on the meta device only. 16x1 and 16x2 stand for the family in
# the tests that need real tensors (init, dtype, numeric forward); the code path is the same.
META_ONLY = set(list_models("lcresnet-*")) - {"lcresnet-20-16x1", "lcresnet-20-16x2"}
REAL_MODELS = [name for name in ALL_MODELS if name not in META_ONLY]

def _layer(prefix: str, bias: bool = True) -> list[str]:
    """State names of a Conv/Linear layer."""
    return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])


def _bn(prefix: str) -> list[str]:
    """State names of a BatchNorm layer (affine parameters, then running statistics)."""
    return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _vgg16d_names() -> list[str]:
    # torchvision vgg16_bn numbering: conv, BN, ReLU per ConvBlock, one index per max-pool.
    names: list[str] = []
    i = 0
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if item == "M":
            i += 1
        else:
            names += _layer(f"features.{i}") + _bn(f"features.{i + 1}")
            i += 3
    assert i == 44
    return names + [
        *_layer("classifier.0"), *_bn("classifier.1"),
        *_layer("classifier.3"), *_bn("classifier.4"),
        *_layer("classifier.6"),
    ]


def _conv(prefix: str) -> list[str]:
    """State names of a bias-free spatial conv."""
    return _layer(prefix, False)


def _lc(prefix: str) -> list[str]:
    """State names of an LC-block: its spatial conv, then its pointwise conv (both bias-free)."""
    return _layer(f"{prefix}.spatial", False) + _layer(f"{prefix}.pointwise", False)


def _block_names(prefix: str, shortcut: str | None, conv=_conv) -> list[str]:
    names = conv(f"{prefix}.conv1") + _bn(f"{prefix}.bn1")
    names += conv(f"{prefix}.conv2") + _bn(f"{prefix}.bn2")
    if shortcut:
        names += _layer(f"{prefix}.{shortcut}.0", False) + _bn(f"{prefix}.{shortcut}.1")
    return names


def _resnet34_tiny_names() -> list[str]:
    # torchvision names; Table S5: every stage's first block (stage 1 included) has a projection.
    names = _layer("conv1", False) + _bn("bn1")
    for stage, n_blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for j in range(n_blocks):
            names += _block_names(f"layer{stage}.{j}", "downsample" if j == 0 else None)
    return names + _layer("fc")


def _resnet20_names(conv=_conv) -> list[str]:
    # open_lth names; blocks 3 and 6 open segments 2 and 3 (stride 2, projection shortcut).
    names = conv("conv") + _bn("bn")
    for i in range(9):
        names += _block_names(f"blocks.{i}", "shortcut" if i in (3, 6) else None, conv)
    return names + _layer("fc")


# Standard state_dict names per model, in order (the container stores tensors by these names).
EXPECTED_STATE = {
    "lenet-300-100": ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"],
    "lenet5-caffe": [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
    ],
    "vgg16-d": _vgg16d_names(),
    "resnet34-tiny": _resnet34_tiny_names(),
    "resnet20": _resnet20_names(),
    # Every LCResNet-20 has the same names: resnet20's, each spatial conv split in two.
    **{name: _resnet20_names(_lc) for name in list_models("lcresnet-20-*")},
}

# Paper counts (FreezeNet Fig. S9 / S10), written out here rather than read from the registry.
PAPER_COUNTS = {"lenet-300-100": (266_610, 410), "lenet5-caffe": (431_080, 580)}

# (family, total, non-weight) for the default configs of the bigger families:
# vgg16-d: FreezeNet Fig. S11, 15,255,626 = weights + 5,258 biases + 10,496 BatchNorm (CIFAR-10);
# resnet34-tiny: FreezeNet Table S5, 21,383,816 = 21,366,464 weights + 200 biases + 17,152 BatchNorm;
# resnet20: open_lth cifar_resnet_20 (W=16), 272,474 = 270,896 weights + 1,568 BatchNorm + 10 biases.
LARGE_COUNTS = {
    "vgg16-d": ("vgg", 15_255_626, 5_258 + 10_496),
    "resnet34-tiny": ("resnet", 21_383_816, 200 + 17_152),
    "resnet20": ("resnet", 272_474, 1_568 + 10),
}

# Input side length per model without an ``input_size`` config key.
INPUT_SIZE = {"vgg16-d": 32, "resnet34-tiny": 64, "resnet20": 32, **dict.fromkeys(list_models("lcresnet-*"), 32)}


def _input_for(name: str, batch: int = 2) -> torch.Tensor:
    cfg = model_info(name).default_config
    size = INPUT_SIZE.get(name, cfg.get("input_size", 28))
    return torch.zeros(batch, cfg.get("in_channels", 1), size, size)


def _non_weight_count(model: nn.Module) -> int:
    weight_names = set(prunable_weights(model))
    return sum(p.numel() for n, p in model.named_parameters() if n not in weight_names)


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
    model = create_model(name, device="meta" if name in META_ONLY else "cpu")
    assert count_parameters(model) == info.params
    weight_names = set(prunable_weights(model))
    n_other = sum(p.numel() for n, p in model.named_parameters() if n not in weight_names)
    assert n_other == info.biases


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_and_dtype(name: str) -> None:
    if name not in META_ONLY:
        model = create_model(name)
        out = model(_input_for(name))  # 2 images keep the ResNet34 / VGG16 forward cheap
        assert out.shape == (2, model_info(name).default_config["num_classes"])
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # Other head: the shape is checked on the meta device (no compute, cheap for ResNet34).
    # Batch 2, not 1: VGG16-D's BatchNorm1d cannot normalise a single sample in train mode.
    out = create_model(name, num_classes=7, device="meta")(_input_for(name, batch=2).to("meta"))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", REAL_MODELS)
def test_plain_module_in_train_mode(name: str) -> None:
    model = create_model(name)
    assert type(model).__module__.startswith("fzpack.models.")
    assert isinstance(model, nn.Module) and model.training
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED_STATE))
def test_state_dict_names(name: str) -> None:
    assert list(create_model(name, device="meta").state_dict()) == EXPECTED_STATE[name]


def test_every_registered_model_has_expected_names() -> None:
    # A new family must add its names here, so the file format's names stay reviewed.
    assert set(ALL_MODELS) == set(EXPECTED_STATE)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_meta_device_counts_without_memory(name: str) -> None:
    model = create_model(name, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == model_info(name).params


@pytest.mark.parametrize("name", REAL_MODELS)
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


# --- VGG16-D and the ResNets ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LARGE_COUNTS))
def test_large_models_registered_with_paper_counts(name: str) -> None:
    family, total, non_weight = LARGE_COUNTS[name]
    info = model_info(name)
    assert (info.family, info.params, info.biases) == (family, total, non_weight)
    assert info.reference and info.description
    model = create_model(name, device="meta")
    assert count_parameters(model) == total
    assert _non_weight_count(model) == non_weight


def test_vgg16d_counts_and_layout() -> None:
    # Fig. S11: CIFAR-100 15,301,796 (5,348 biases + 10,496 BatchNorm).
    m100 = create_model("vgg16-d", num_classes=100, device="meta")
    assert count_parameters(m100) == 15_301_796
    assert _non_weight_count(m100) == 5_348 + 10_496
    model = create_model("vgg16-d", device="meta")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(512, 512), (512, 512), (512, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    # Other input channels / classes: shapes checked on the meta device (no compute).
    gray = create_model("vgg16-d", in_channels=1, num_classes=100, device="meta")
    assert gray(torch.empty(2, 1, 32, 32, device="meta")).shape == (2, 100)


def test_vgg16d_rejects_other_input_sizes() -> None:
    model = create_model("vgg16-d", device="meta")
    with pytest.raises(ValueError, match="32 x 32"):
        model(torch.empty(2, 3, 64, 64, device="meta"))


def test_vgg16d_batchnorm_initialised_to_constants() -> None:
    model = create_model("vgg16-d")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 15
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
        assert bn.num_batches_tracked.item() == 0


def test_resnet34_tiny_follows_table_s5() -> None:
    model = create_model("resnet34-tiny", device="meta")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [len(getattr(model, f"layer{k}")) for k in (1, 2, 3, 4)] == [3, 4, 6, 3]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    assert model.fc.bias is not None and (model.fc.in_features, model.fc.out_features) == (512, 200)
    # Output sizes of Table S5: 64 -> 32 (stage 1 already has stride 2) -> 16 -> 8 -> 4.
    x = torch.empty(2, 3, 64, 64, device="meta")
    x = model.bn1(model.conv1(x))
    assert x.shape[-2:] == (64, 64)
    for k, (side, chans) in enumerate([(32, 64), (16, 128), (8, 256), (4, 512)], start=1):
        x = getattr(model, f"layer{k}")(x)
        assert x.shape[1:] == (chans, side, side)
    # Table S5 weight count 21,366,464 needs the 64 -> 64 1x1 projection in layer1.0.
    assert model.layer1[0].downsample[0].weight.shape == (64, 64, 1, 1)
    weights = set(prunable_weights(model))
    assert sum(p.numel() for n, p in model.named_parameters() if n in weights) == 21_366_464
    # Synaptic-Flow's variant (stage 1 stride 1, identity shortcuts there): 4,096 + 128 fewer.
    flat = create_model("resnet34-tiny", first_stride=1, device="meta")
    assert count_parameters(flat) == 21_383_816 - 64 * 64 - 2 * 64
    assert isinstance(flat.layer1[0].downsample, nn.Identity)


@pytest.mark.parametrize("width", [4, 8, 16, 32])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet20_count_formula(width: int, num_classes: int) -> None:
    # convs 27W + 1054W^2 (incl. 1x1 shortcuts 2W^2 + 8W^2), BN 2 x 49W, fc (4W + 1) x classes.
    model = create_model("resnet20", width=width, num_classes=num_classes, device="meta")
    expected = 1054 * width**2 + 27 * width + 98 * width + (4 * width + 1) * num_classes
    assert count_parameters(model) == expected
    assert _non_weight_count(model) == 98 * width + num_classes
    if (width, num_classes) == (16, 10):
        assert expected == 272_474


def test_resnet20_layout() -> None:
    model = create_model("resnet20", device="meta")
    assert len(model.blocks) == 9
    strides = [b.conv1.stride[0] for b in model.blocks]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert [b.conv2.out_channels for b in model.blocks] == [16] * 3 + [32] * 3 + [64] * 3
    has_proj = [not isinstance(b.shortcut, nn.Identity) for b in model.blocks]
    assert has_proj == [False, False, False, True, False, False, True, False, False]
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)
    wide = create_model("resnet20", width=32, num_classes=100, in_channels=1, device="meta")
    assert wide.fc.in_features == 128
    assert wide(torch.empty(2, 1, 32, 32, device="meta")).shape == (2, 100)


def test_large_model_config_errors() -> None:
    with pytest.raises(ModelError, match="width"):
        create_model("resnet20", width=0, device="meta")
    with pytest.raises(ModelError, match="first_stride"):
        create_model("resnet34-tiny", first_stride=3, device="meta")
    with pytest.raises(ModelError, match="num_classes"):
        create_model("vgg16-d", num_classes=0, device="meta")
    with pytest.raises(ModelError, match="unknown config key"):
        create_model("vgg16-d", input_size=64, device="meta")


# --- LCResNet (Gavrikov & Keuper) -------------------------------------------------------------

# name: (total, spatial-conv weights, everything else), 3 x 32 x 32 inputs, 10 classes, k = 3.
# Written out (not read from the registry); test_lcresnet_count_formula derives them.
LC_COUNTS = {
    "lcresnet-20-16x1": (304_986, 267_696, 37_290),
    "lcresnet-20-16x2": (605_194, 535_392, 69_802),
    "lcresnet-20-16x4": (1_205_610, 1_070_784, 134_826),
    "lcresnet-20-16x8": (2_406_442, 2_141_568, 264_874),
    "lcresnet-20-16x16": (4_808_106, 4_283_136, 524_970),
    "lcresnet-20-16x32": (9_611_434, 8_566_272, 1_045_162),
    "lcresnet-20-16x64": (19_218_090, 17_132_544, 2_085_546),
    "lcresnet-20-16x128": (38_431_402, 34_265_088, 4_166_314),
    "lcresnet-20-64x1": (4_847_946, 4_277_952, 569_994),
}


def _lc_count(
    depth: int, width: int, expansion: int, kernel_size: int = 3, in_channels: int = 3, num_classes: int = 10
) -> tuple[int, int, int]:
    """(spatial, pointwise, other) parameters of LCResNet-{depth}-{width}x{expansion}, in closed form."""
    n, w, e, k2 = (depth - 2) // 6, width, expansion, kernel_size**2
    # Spatial: stem c W E k^2; per segment the first conv (f_in -> f_out) then 2n - 1 (f_out -> f_out):
    # E k^2 W^2 [2n + (2 + 4 (2n - 1)) + (8 + 16 (2n - 1))] = E k^2 W^2 (42 n - 10).
    spatial = e * k2 * (in_channels * w + w * w * (42 * n - 10))
    pointwise = e * w * w * (1 + 42 * n)  # each LC-block: (W_out E) x W_out
    shortcuts = w * 2 * w + 2 * w * 4 * w
    batchnorm = 2 * w * (1 + 2 * n + 4 * n + 8 * n + 2 + 4)  # stem, 6n block BNs, 2 shortcut BNs
    fc = (4 * w + 1) * num_classes
    return spatial, pointwise, shortcuts + batchnorm + fc


def _spatial_count(model: nn.Module) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in lc_weight_names(model)[0])


def test_lcresnet_registered_names_and_counts() -> None:
    assert set(list_models("lcresnet-*")) == set(LC_COUNTS)
    for name, (total, spatial, other) in LC_COUNTS.items():
        width, expansion = (int(v) for v in name.rsplit("-", 1)[1].split("x"))
        info = model_info(name)
        assert info.family == "lcresnet" and info.reference.startswith("Gavrikov & Keuper, LCResNet")
        assert info.default_config == dict(
            depth=20, width=width, expansion=expansion, num_classes=10, in_channels=3, kernel_size=3
        )
        assert (info.params, info.biases) == (total, 98 * width + 10)
        assert info.description.startswith(f"LCResNet-20-{width}x{expansion}:")
        model = create_model(name, device="meta")
        assert isinstance(model, LCResNet) and (model.expansion, model.kernel_size) == (expansion, 3)
        assert count_parameters(model) == total
        assert _spatial_count(model) == spatial and total - spatial == other
        assert _non_weight_count(model) == info.biases


@pytest.mark.parametrize(
    "depth,width,expansion,kernel_size,in_channels,num_classes",
    [(20, 16, 1, 3, 3, 10), (20, 16, 128, 3, 3, 10), (20, 64, 1, 3, 3, 10), (8, 4, 3, 5, 1, 100), (32, 8, 2, 7, 3, 10)],
)
def test_lcresnet_count_formula(
    depth: int, width: int, expansion: int, kernel_size: int, in_channels: int, num_classes: int
) -> None:
    cfg = dict(
        depth=depth, width=width, expansion=expansion, kernel_size=kernel_size,
        in_channels=in_channels, num_classes=num_classes,
    )
    model = create_model("lcresnet-20-16x1", device="meta", **cfg)  # any entry builds any D, W, E, k
    spatial, pointwise, other = _lc_count(**cfg)
    assert count_parameters(model) == spatial + pointwise + other
    assert _spatial_count(model) == spatial
    name = f"lcresnet-{depth}-{width}x{expansion}"
    if name in LC_COUNTS:
        assert LC_COUNTS[name] == (spatial + pointwise + other, spatial, pointwise + other)
    if (expansion, kernel_size) == (1, 3):
        # E = 1: the spatial convs are exactly ResNet-D's, plus one W_out x W_out pointwise conv each.
        with torch.device("meta"):
            plain = CifarResNet(depth, width, num_classes, in_channels)
        assert count_parameters(model) == count_parameters(plain) + pointwise


def test_lcresnet_20_16x128_matches_paper_tables_1_and_3() -> None:
    # Counted on the meta device: 38 M parameters are never allocated here.
    model = create_model("lcresnet-20-16x128", device="meta")
    total = count_parameters(model)
    outside_spatial = total - _spatial_count(model)
    # Table 1: 38.4 M total, 4.2 M learnable once the spatial convs are frozen (pointwise convs,
    # 1x1 shortcuts, BatchNorm, fc) - so the shortcuts are plain 1x1 convs, not LC-blocks.
    assert round(total / 1e6, 1) == 38.4
    assert round(outside_spatial / 1e6, 1) == 4.2
    # Table 3: the dense checkpoint (fp32 state dict, BN running statistics included) takes
    # 146.66 MB, i.e. MiB (decimal MB would be 153.7). The tensors are 146.61 MiB; torch.save's
    # zip/pickle framing adds ~0.04 MiB (measured: a real 16x128 state dict saves to 146.65 MiB).
    dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # fp32 parameters + running mean/var of the 784 BN channels + 21 int64 num_batches_tracked.
    assert dense == 4 * total + 4 * 1_568 + 8 * 21
    assert 146.66 - 0.06 < dense / 2**20 <= 146.66


def test_lc_layers_and_weight_names() -> None:
    model = create_model("lcresnet-20-16x4", kernel_size=5, device="meta")
    layers = lc_layers(model)
    names = [name for name, _ in layers]
    assert names == ["conv"] + [f"blocks.{i}.conv{j}" for i in range(9) for j in (1, 2)]
    assert all(block is model.get_submodule(name) for name, block in layers)
    # (in, out, stride) of the stem and of each block's conv1, conv2.
    expected = [(3, 16, 1)]
    for i, (f_in, f_out) in enumerate([(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2):
        expected += [(f_in, f_out, 2 if i in (3, 6) else 1), (f_out, f_out, 1)]
    params = dict(model.named_parameters())
    for (name, block), (f_in, f_out, stride) in zip(layers, expected, strict=True):
        assert (block.in_channels, block.out_channels, block.stride) == (f_in, f_out, stride)
        assert (block.expansion, block.kernel_size, block.padding, block.fan_in) == (4, 5, 2, f_in * 25)
        assert params[f"{name}.spatial.weight"].shape == (4 * f_out, f_in, 5, 5)
        assert params[f"{name}.pointwise.weight"].shape == (f_out, 4 * f_out, 1, 1)
        assert block.spatial.stride == (stride, stride) and block.pointwise.stride == (1, 1)
    spatial, pointwise = lc_weight_names(model)
    assert spatial == [f"{n}.spatial.weight" for n in names]
    assert pointwise == [f"{n}.pointwise.weight" for n in names]
    # Every other weight is a 1x1 shortcut or the classifier; module order interleaves the lists.
    others = ["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight", "fc.weight"]
    lc_order = [w for pair in zip(spatial, pointwise) for w in pair]
    assert [w for w in prunable_weights(model) if w not in others] == lc_order
    assert set(prunable_weights(model)) == set(spatial) | set(pointwise) | set(others)
    # Models without LC-blocks, and a bare block.
    assert lc_layers(create_model("resnet20", device="meta")) == []
    assert lc_weight_names(create_model("vgg16-d", device="meta")) == ([], [])
    with torch.device("meta"):
        assert lc_weight_names(LCBlock(3, 4, 2)) == (["spatial.weight"], ["pointwise.weight"])


def test_lcresnet_shortcuts_stay_plain_1x1_convs() -> None:
    model = create_model("lcresnet-20-16x2", device="meta")
    for i in (3, 6):
        proj = model.blocks[i].shortcut[0]
        assert type(proj) is nn.Conv2d and proj.kernel_size == (1, 1) and proj.stride == (2, 2)
    assert not any(isinstance(m, LCBlock) for m in model.blocks[3].shortcut.modules())
    # The only non-LC convs are the two projections: the stem and all 18 block convs are LC-blocks.
    lc_convs = {id(m) for _, b in lc_layers(model) for m in (b.spatial, b.pointwise)}
    plain = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in lc_convs]
    assert plain == ["blocks.3.shortcut.0", "blocks.6.shortcut.0"]


@torch.no_grad()
def test_lc_block_is_one_conv_with_combined_filters() -> None:
    # Paper Eq. 4: no BN or activation between the convs, so the block equals a single k x k conv
    # whose filters are the pointwise-weighted sums of the spatial filters.
    with torch.device("meta"):
        block = LCBlock(3, 4, expansion=5, kernel_size=3, stride=2)
    block.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    for p in block.parameters():
        p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 3, 9, 9, generator=g)
    combined = torch.einsum("om,mikl->oikl", block.pointwise.weight[:, :, 0, 0], block.spatial.weight)
    out = block(x)
    assert out.shape == (2, 4, 5, 5)
    torch.testing.assert_close(out, F.conv2d(x, combined, stride=2, padding=1), rtol=1e-4, atol=1e-4)
    assert list(dict(block.named_parameters())) == ["spatial.weight", "pointwise.weight"]


@pytest.mark.parametrize("name", ["lcresnet-20-16x1", "lcresnet-20-16x2"])
def test_lcresnet_real_forward_and_default_init(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    gray = create_model(name, in_channels=1)
    out = gray(torch.randn(2, 1, 28, 28, generator=g))  # MNIST size: 28 -> 14 -> 7
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    model = create_model(name)
    out = model(torch.randn(2, 3, 32, 32, generator=g))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # PyTorch's default init, as the paper uses (Eq. 3): U[-1/sqrt(fan_in), 1/sqrt(fan_in)] for
    # the spatial conv (fan_in = c_in k^2) and for the pointwise conv (fan_in = W_out E).
    for _, block in lc_layers(model):
        pointwise_fan_in = block.out_channels * block.expansion
        for weight, fan_in in ((block.spatial.weight, block.fan_in), (block.pointwise.weight, pointwise_fan_in)):
            bound = fan_in**-0.5
            assert 0.8 * bound < weight.abs().max() <= bound


def test_lcresnet_config_variants_and_errors() -> None:
    model = create_model("lcresnet-20-16x1", depth=32, width=8, expansion=3, kernel_size=7, device="meta")
    assert len(model.blocks) == 15
    assert all(b.conv1.spatial.padding == (3, 3) for b in model.blocks)
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)
    # Strides: 32 -> 16 -> 8, like resnet20.
    assert [b.conv1.stride for b in model.blocks] == [1] * 5 + [2] + [1] * 4 + [2] + [1] * 4
    with pytest.raises(ModelError, match="kernel_size must be odd"):
        create_model("lcresnet-20-16x1", kernel_size=4, device="meta")
    with pytest.raises(ModelError, match="expansion must be a positive int"):
        create_model("lcresnet-20-16x1", expansion=0, device="meta")
    with pytest.raises(ModelError, match="depth must be 6D"):
        create_model("lcresnet-20-16x1", depth=21, device="meta")
    with pytest.raises(ModelError, match="unknown config key"):
        create_model("lcresnet-20-16x1", shortcut="lc", device="meta")
