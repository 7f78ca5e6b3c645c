"""LCResNet (Gavrikov & Keuper, "Rethinking 1x1 Convolutions: Can we train CNNs with Frozen Random
Filters?"): the CIFAR ResNet with every spatial convolution replaced by an LC-block.

An LC-block is a spatial k x k convolution c_in -> c_out * E directly followed by a pointwise
1 x 1 convolution c_out * E -> c_out, with nothing in between: the 1 x 1 weights learn linear
combinations of the (frozen, random) spatial filters (paper Sec. 3, Eq. 4), and the expansion E
sets how many filters each output can combine. LCResNet-{D}-{W}x{E} is `CifarResNet` (open_lth
layout, ``resnet.py``) built with LC-blocks for the stem and for both convolutions of every basic
block; the 1 x 1 projection shortcuts stay plain 1 x 1 convolutions.

This module only defines the networks. Freezing, weight sharing and pruning of the LC family
live elsewhere and find the weights through `lc_layers` / `lc_weight_names`: the spatial weights
are the ones to freeze or share, the pointwise ones the ones to train and prune.
"""

from __future__ import annotations

import torch
from torch import nn

from fzpack.models.registry import register_model
from fzpack.models.resnet import CifarResNet, _check_positive

__all__ = ["LCBlock", "LCResNet", "lc_layers", "lc_weight_names"]

REFERENCE = "Gavrikov & Keuper, LCResNet"


class LCBlock(nn.Module):
    """LC-block: ``spatial`` k x k conv (c_in -> c_out * E) then ``pointwise`` 1 x 1 conv (-> c_out).

    Neither convolution has a bias and there is no normalisation or activation between them
    (paper Fig. 5), so the block is one linear k x k convolution whose filters are linear
    combinations of the spatial filters. Padding is ``kernel_size // 2`` ("same" size at stride
    1), which is why the kernel size must be odd. State dict: ``spatial.weight`` of shape
    (c_out * E, c_in, k, k) and ``pointwise.weight`` of shape (c_out, c_out * E, 1, 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int = 1,
        kernel_size: int = 3,
        stride: int = 1,
    ) -> None:
        super().__init__()
        _check_positive(
            in_channels=in_channels, out_channels=out_channels, expansion=expansion,
            kernel_size=kernel_size, stride=stride,
        )
        if kernel_size % 2 == 0:
            # Padding k // 2 would grow an even kernel's output by one pixel and break the residual sum.
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.expansion = expansion
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.spatial = nn.Conv2d(
            in_channels, out_channels * expansion, kernel_size, stride=stride, padding=self.padding, bias=False
        )
        self.pointwise = nn.Conv2d(out_channels * expansion, out_channels, 1, bias=False)

    @property
    def fan_in(self) -> int:
        """c_in * k^2 of the spatial conv; its default init is U[+-1/sqrt(fan_in)] (paper Eq. 3, App. D)."""
        return self.in_channels * self.kernel_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.spatial(x))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, expansion={self.expansion}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}"
        )


class LCResNet(CifarResNet):
    """LCResNet-{D}-{W}x{E}: CIFAR ResNet-D (open_lth layout) with every spatial conv an `LCBlock`.

    Stem LC-block(in_channels -> W)-BN-ReLU, three segments of (D - 2) / 6 basic blocks with W,
    2W, 4W channels whose two convolutions are LC-blocks (the first block of segments 2 and 3
    has stride 2 in its first LC-block and a plain 1 x 1 conv + BN shortcut), global average
    pooling and Linear(4W, num_classes). State dict names are `CifarResNet`'s with each spatial
    conv ``X`` split into ``X.spatial`` and ``X.pointwise``: ``conv.spatial``, ``conv.pointwise``,
    ``bn``, ``blocks.{i}.conv1.spatial``, ..., ``blocks.{i}.shortcut.{0,1}``, ``fc``. With E = 1
    the spatial convolutions are exactly ResNet-D's, plus one W_out x W_out 1 x 1 conv each.
    """

    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        expansion: int = 1,
        num_classes: int = 10,
        in_channels: int = 3,
        kernel_size: int = 3,
    ) -> None:
        # Checked here too so a bad expansion or kernel size is reported once, before any block exists.
        _check_positive(expansion=expansion, kernel_size=kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")

        def lc_conv(f_in: int, f_out: int, stride: int) -> LCBlock:
            return LCBlock(f_in, f_out, expansion=expansion, kernel_size=kernel_size, stride=stride)

        super().__init__(depth, width=width, num_classes=num_classes, in_channels=in_channels, conv=lc_conv)
        self.expansion = expansion
        self.kernel_size = kernel_size


def lc_layers(model: nn.Module) -> list[tuple[str, LCBlock]]:
    """Every `LCBlock` of ``model`` with its module name, in module (registration) order.

    Args:
        model: any module, also on the ``meta`` device; a model without LC-blocks gives ``[]``.

    Returns:
        ``(prefix, block)`` pairs; the block's weights are ``<prefix>.spatial.weight`` and
        ``<prefix>.pointwise.weight`` (just ``spatial.weight`` when ``model`` is itself a block).

    Example:
        >>> from fzpack.models import create_model
        >>> [name for name, _ in lc_layers(create_model("lcresnet-20-16x4", device="meta"))][:3]
        ['conv', 'blocks.0.conv1', 'blocks.0.conv2']
    """
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LCBlock)]


def lc_weight_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """State-dict names of the LC-blocks' spatial weights and of their pointwise weights.

    The spatial weights are the ones the LC family freezes (and shares); the pointwise ones are
    trained, L1-regularised and pruned. Projection shortcuts, BatchNorm and the classifier are
    in neither list.

    Args:
        model: any module, also on the ``meta`` device.

    Returns:
        ``(spatial, pointwise)``: two lists of names, each in module order, ``spatial[i]`` and
        ``pointwise[i]`` belonging to the same block.

    Example:
        >>> from fzpack.models import create_model
        >>> spatial, pointwise = lc_weight_names(create_model("lcresnet-20-16x1", device="meta"))
        >>> spatial[0], pointwise[0], len(spatial)
        ('conv.spatial.weight', 'conv.pointwise.weight', 19)
    """
    layers = lc_layers(model)
    prefixes = [f"{name}." if name else "" for name, _ in layers]
    return [f"{p}spatial.weight" for p in prefixes], [f"{p}pointwise.weight" for p in prefixes]


# The registered LCResNet-20 configurations: (W, E, total parameters, non-weight parameters),
# for 3 x 32 x 32 inputs, 10 classes and k = 3. Total = spatial E (1044 W^2 + 27 W) + pointwise
# 127 E W^2 + shortcuts 10 W^2 + BatchNorm 98 W + fc 40 W + 10; non-weight = 98 W + 10
# (tests/test_models.py checks the general formula against the modules).
# 16x1 ... 16x128 are the paper's expansion sweep (Fig. 1, 4, 9); 16x128 is Table 1 / Table 3
# (38.4 M total, 4.2 M outside the spatial convs, 146.66 MB dense checkpoint); 64x1 is Fig. 10.
_REGISTERED: tuple[tuple[int, int, int, int], ...] = (
    (16, 1, 304_986, 1_578),
    (16, 2, 605_194, 1_578),
    (16, 4, 1_205_610, 1_578),
    (16, 8, 2_406_442, 1_578),
    (16, 16, 4_808_106, 1_578),
    (16, 32, 9_611_434, 1_578),
    (16, 64, 19_218_090, 1_578),
    (16, 128, 38_431_402, 1_578),
    (64, 1, 4_847_946, 6_282),
)

_FIGURES = {
    (16, 128): "Sec. 4.2-4.3, Fig. 1/4/9, Table 1: 38.4 M total, 4.2 M outside the spatial convs; "
    "Table 3: 146.66 MB dense checkpoint",
    (64, 1): "Sec. 4.3, Fig. 10 (recycled weight sharing)",
}


def _register(width: int, expansion: int, params: int, biases: int) -> None:
    """Register ``lcresnet-20-{W}x{E}``: a factory whose signature defaults are that configuration."""
    name = f"lcresnet-20-{width}x{expansion}"

    # A separate function per name (not a partial) so the registry reads this configuration
    # from the signature defaults and its family ("lcresnet") from __module__.
    def factory(
        depth: int = 20,
        width: int = width,
        expansion: int = expansion,
        num_classes: int = 10,
        in_channels: int = 3,
        kernel_size: int = 3,
    ) -> LCResNet:
        return LCResNet(depth, width, expansion, num_classes, in_channels, kernel_size)

    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = (
        f"LCResNet-20-{width}x{expansion}: CIFAR ResNet-20 (W = {width}) with LC-blocks of expansion {expansion}.\n\n"
        f"{params:,} parameters for 3 x 32 x 32 inputs and 10 classes, {biases:,} of them BatchNorm "
        "affine parameters and fc biases. Any depth 6D + 2, width, expansion or odd kernel size "
        "can be built from this entry through the config keys."
    )
    where = _FIGURES.get((width, expansion), "Sec. 4.2, Fig. 1/4/9 (expansion sweep of LCResNet-20-16)")
    register_model(name, params=params, biases=biases, reference=f"{REFERENCE}, {where}")(factory)


for _width, _expansion, _params, _biases in _REGISTERED:
    _register(_width, _expansion, _params, _biases)
