"""LeNet family used by FreezeNet and SNIP on MNIST / Fashion-MNIST.

Both networks return logits; the paper's final ``log softmax`` (Fig. S9, S10) is part of the
cross-entropy loss here, which is numerically the same and keeps the modules plain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fzpack.models.registry import register_model

__all__ = ["LeNet300100", "LeNet5Caffe"]


@register_model("lenet-300-100", params=266_610, biases=410, reference="FreezeNet Fig. S9")
class LeNet300100(nn.Module):
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU (FreezeNet Fig. S9).

    The input image is flattened, so any ``in_channels x input_size x input_size`` works;
    the default (1 x 28 x 28, 10 classes) has 266,610 parameters, 410 of them biases.
    State dict: ``fc1``, ``fc2``, ``fc3`` (``.weight`` / ``.bias``).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        self.fc1 = nn.Linear(in_channels * input_size * input_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register_model("lenet5-caffe", params=431_080, biases=580, reference="FreezeNet Fig. S10, Table 2")
class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe: Conv(1,20,5) - pool - Conv(20,50,5) - pool - FC 800-500 - ReLU - FC 500-10.

    There is deliberately NO ReLU after the two convolutions by default: this is the Caffe
    ``lenet_train_test.prototxt`` network that the official SNIP code (and FreezeNet's
    comparison with it) uses. FreezeNet's Fig. S10 draws a ReLU after each conv, as most
    PyTorch ports do; ``conv_relu=True`` gives that variant. The parameter count is the same
    either way: 431,080 with 580 biases for 1 x 28 x 28 inputs and 10 classes.

    Convolutions are 5 x 5, stride 1, no padding; max-pooling is 2 x 2 with stride 2, so a
    28 x 28 input reaches fc1 as 50 x 4 x 4 = 800 features. State dict: ``conv1``, ``conv2``,
    ``fc1``, ``fc2``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        conv_relu: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size must be at least 16 for LeNet-5-Caffe, got {input_size}")
        self.conv_relu = bool(conv_relu)
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.conv_relu:
            x = F.relu(x)
        x = F.max_pool2d(x, 2, 2)
        x = self.conv2(x)
        if self.conv_relu:
            x = F.relu(x)
        x = F.max_pool2d(x, 2, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
