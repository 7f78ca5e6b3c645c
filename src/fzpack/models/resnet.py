"""Residual networks: FreezeNet's ResNet34 for Tiny ImageNet and the CIFAR ResNet-20 (open_lth).

Both use the post-activation basic block of He et al.: conv3x3(stride s)-BN-ReLU-conv3x3-BN,
plus a shortcut, then ReLU. The shortcut is a 1 x 1 convolution (stride s, no bias) followed
by BatchNorm when the block changes the resolution or the width, the identity otherwise. No
convolution has a bias; the only bias is the final Linear layer's. Both networks return logits.

The spatial convolutions are built by a `ConvFactory` (``conv3x3`` here), so a family that only
swaps the convolution, such as ``lcresnet.py``'s LC-blocks, reuses these blocks and networks.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.models.registry import register_model

__all__ = [
    "ConvFactory",
    "conv3x3",
    "BasicBlock",
    "TinyImageNetResNet",
    "CifarResNet",
    "resnet34_tiny",
    "resnet20",
]

# ``conv(f_in, f_out, stride)`` -> a module mapping f_in to f_out channels with that stride and
# "same" padding: the spatial convolutions of the stem and of every basic block.
ConvFactory = Callable[[int, int, int], nn.Module]


def conv3x3(f_in: int, f_out: int, stride: int = 1) -> nn.Conv2d:
    """A 3 x 3 convolution with padding 1 and no bias (BatchNorm follows it): the default `ConvFactory`.

    Args:
        f_in: input channels.
        f_out: output channels.
        stride: 1, or 2 to halve the resolution.

    Returns:
        ``nn.Conv2d(f_in, f_out, 3, stride, padding=1, bias=False)``.

    Example:
        >>> conv3x3(16, 32, 2).weight.shape
        torch.Size([32, 16, 3, 3])
    """
    return nn.Conv2d(f_in, f_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Basic residual block with ``conv1``, ``bn1``, ``conv2``, ``bn2`` and a projection shortcut.

    The projection (``<shortcut_name>.0`` 1 x 1 conv, ``<shortcut_name>.1`` BatchNorm2d) exists
    only when ``stride != 1`` or ``f_in != f_out``; otherwise the shortcut is the identity and
    has no state. ``shortcut_name`` is ``"downsample"`` (torchvision) or ``"shortcut"`` (open_lth).
    ``conv1`` and ``conv2`` come from ``conv`` (3 x 3 convolutions by default); the projection is
    always a plain 1 x 1 convolution, since it is pointwise, not spatial.
    """

    def __init__(
        self,
        f_in: int,
        f_out: int,
        stride: int = 1,
        shortcut_name: str = "downsample",
        conv: ConvFactory = conv3x3,
    ) -> None:
        super().__init__()
        self.conv1 = conv(f_in, f_out, stride)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = conv(f_out, f_out, 1)
        self.bn2 = nn.BatchNorm2d(f_out)
        if stride != 1 or f_in != f_out:
            projection: nn.Module = nn.Sequential(
                nn.Conv2d(f_in, f_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(f_out),
            )
        else:
            projection = nn.Identity()
        self._shortcut_name = shortcut_name
        setattr(self, shortcut_name, projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + getattr(self, self._shortcut_name)(x))


class TinyImageNetResNet(nn.Module):
    """ImageNet-depth ResNet with a CIFAR-style stem, as FreezeNet Table S5 uses on Tiny ImageNet.

    Stem: conv3x3(in_channels, 64, stride 1, no bias)-BN-ReLU, no max-pool. Four stages of basic
    blocks with 64, 128, 256, 512 channels; the first block of stage 1 has stride
    ``first_stride`` and the first block of every later stage stride 2. Global average pooling
    and Linear(512, num_classes). State dict names follow torchvision: ``conv1``, ``bn1``,
    ``layer{1..4}.{j}.{conv1,bn1,conv2,bn2}``, ``layer{k}.0.downsample.{0,1}``, ``fc``.
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = (3, 4, 6, 3),
        num_classes: int = 200,
        in_channels: int = 3,
        first_stride: int = 2,
    ) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels)
        if first_stride not in (1, 2):
            raise ValueError(f"first_stride must be 1 or 2, got {first_stride!r}")
        if len(blocks) != 4 or not all(isinstance(b, int) and b >= 1 for b in blocks):
            raise ValueError(f"blocks must be four positive ints, got {blocks!r}")
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        f_in = 64
        for stage, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stride = first_stride if stage == 1 else 2
            layer = []
            for j in range(n_blocks):
                layer.append(BasicBlock(f_in, width, stride if j == 0 else 1, shortcut_name="downsample"))
                f_in = width
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6D+2) in the open_lth layout (``cifar_resnet_N_W``).

    Stem conv3x3(in_channels, W, no bias)-BN-ReLU, then three segments of D basic blocks with
    W, 2W, 4W channels (the first block of segments 2 and 3 has stride 2 and a 1 x 1 conv + BN
    shortcut), global average pooling and Linear(4W, num_classes). State dict names are
    open_lth's: ``conv``, ``bn``, ``blocks.{i}.{conv1,bn1,conv2,bn2}``, ``blocks.{i}.shortcut.{0,1}``
    and ``fc``, with the 3D blocks numbered consecutively. ``conv`` builds the stem's and the
    blocks' spatial convolutions (3 x 3 convolutions by default; LC-blocks in ``lcresnet.py``).
    """

    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        conv: ConvFactory = conv3x3,
    ) -> None:
        super().__init__()
        _check_positive(depth=depth, width=width, num_classes=num_classes, in_channels=in_channels)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6D + 2 with D >= 1, got {depth}")
        per_segment = (depth - 2) // 6
        self.conv = conv(in_channels, width, 1)
        self.bn = nn.BatchNorm2d(width)
        blocks = []
        f_in = width
        for segment, f_out in enumerate((width, 2 * width, 4 * width)):
            for j in range(per_segment):
                stride = 2 if segment > 0 and j == 0 else 1
                blocks.append(BasicBlock(f_in, f_out, stride, shortcut_name="shortcut", conv=conv))
                f_in = f_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


@register_model(
    "resnet34-tiny",
    params=21_383_816,
    biases=17_352,
    reference="FreezeNet Table S5 / Fig. S12: 21,383,816 params = 21,366,464 weights "
    "+ 200 biases + 17,152 BatchNorm (200 classes, stage-1 stride 2 with 1x1 shortcut)",
)
def resnet34_tiny(num_classes: int = 200, in_channels: int = 3, first_stride: int = 2) -> TinyImageNetResNet:
    """ResNet34 for Tiny ImageNet (64 x 64, 200 classes) exactly as FreezeNet Table S5 / Fig. S12.

    Stem conv3x3 stride 1 (no 7 x 7 conv, no max-pool); blocks (3, 4, 6, 3) with 64-128-256-512
    channels. As in Table S5 the first stage already downsamples (64 -> 32 -> 16 -> 8 -> 4, then
    a 4 x 4 average pool), so its first block gets a 64 -> 64 1 x 1 conv + BN shortcut; this is
    what makes the paper's count come out: 21,383,816 parameters, 21,366,464 weights, 200
    biases, 17,152 BatchNorm. ``first_stride=1`` gives the Synaptic-Flow ``tinyimagenet_resnet``
    variant (no stage-1 downsampling or shortcut): 21,379,592 parameters.
    """
    return TinyImageNetResNet(
        (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, first_stride=first_stride
    )


@register_model(
    "resnet20",
    params=272_474,
    biases=1_578,
    reference="open_lth cifar_resnet_20 (W=16, 10 classes): 272,474 params, computed here and "
    "matching the published count of ResNet-20 with 1x1-conv shortcuts (e.g. imgclsmob resnet20_cifar10)",
)
def resnet20(width: int = 16, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-20 (open_lth ``cifar_resnet_20[_W]``): 3 segments x 3 basic blocks, W-2W-4W.

    W = 16, 10 classes: 272,474 parameters = 270,896 conv/linear weights + 1,568 BatchNorm
    + 10 fc biases (the He et al. "option A" zero-padding shortcut would give 269,722; open_lth
    uses 1 x 1 conv + BN projections). Any 32 x 32 (or larger) input works.
    """
    return CifarResNet(20, width=width, num_classes=num_classes, in_channels=in_channels)


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
