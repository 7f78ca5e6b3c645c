"""VGG16-D for CIFAR-10/100 as used by SNIP and FreezeNet (BatchNorm instead of Dropout).

The network returns logits; the paper's final ``log softmax`` (Fig. S11) is part of the
cross-entropy loss here, as for the LeNets.
"""

from __future__ import annotations

import torch
from torch import nn

from fzpack.models.registry import register_model

__all__ = ["VGG16D", "VGG16D_CONFIG"]

# Output channels of the 13 ConvBlocks, "M" = 2 x 2 max-pooling (VGG configuration "D").
VGG16D_CONFIG: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip


@register_model(
    "vgg16-d",
    params=15_255_626,
    biases=15_754,
    reference="FreezeNet Fig. S11: 15,255,626 params for CIFAR-10 (15,301,796 for CIFAR-100), "
    "5,258 biases + 10,496 BatchNorm",
)
class VGG16D(nn.Module):
    """VGG16-D for 32 x 32 inputs: 13 ConvBlocks (conv-BN-ReLU), 2 LinearBlocks (FC-BN1d-ReLU), FC.

    FreezeNet Fig. S11 (following SNIP, Dropout replaced by BatchNorm): every 3 x 3 convolution
    (stride 1, padding 1, with bias) is followed by BatchNorm2d and ReLU, five 2 x 2 max-pools
    bring 32 x 32 down to 1 x 1, the 512 features go through Linear(512, 512)-BatchNorm1d-ReLU
    twice and a final Linear(512, num_classes). All Linear layers have biases.

    Parameters: 15,255,626 for 10 classes (15,301,796 for 100), of which 15,754 (5,258 biases
    + 10,496 BatchNorm affine) are non-weights for 10 classes (15,844 for 100). Only 32 x 32
    inputs fit (the classifier expects a 512 x 1 x 1 feature map). Because of the BatchNorm1d
    layers a training-mode forward needs a batch of at least 2.

    State dict (torchvision ``vgg16_bn`` numbering): ``features.{i}`` for the conv / BN layers
    (conv at 0, 3, 7, 10, ..., BN right after each), ``classifier.{0,3,6}`` Linear and
    ``classifier.{1,4}`` BatchNorm1d.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16D_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers += [
                    nn.Conv2d(channels, item, kernel_size=3, stride=1, padding=1),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != (32, 32):
            raise ValueError(f"VGG16-D expects N x C x 32 x 32 inputs, got {tuple(x.shape)}")
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))
