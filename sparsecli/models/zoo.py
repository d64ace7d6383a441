"""Built-in models, sized for the bundled digits data but built for any input shape.

Each builder takes `input_shape` (C, H, W) or (features,) and `num_classes`; extra kwargs come
from the recipe's `model.kwargs`. The last Linear is always named `classifier`, so recipes can
exclude it by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn

from sparsecli.models.transformer import transformer


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 128)) -> nn.Module:
    """Fully connected net on the flattened input."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    body = nn.Sequential(*layers)
    return _Classifier(body, nn.Linear(width, num_classes))


def convnet(input_shape: Sequence[int], num_classes: int, width: int = 32) -> nn.Module:
    """Three conv-BN-ReLU blocks and a linear classifier: the quickstart model."""
    channels = input_shape[0]
    body = nn.Sequential(
        _conv_bn(channels, width),
        _conv_bn(width, 2 * width),
        nn.MaxPool2d(2),
        _conv_bn(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return _Classifier(body, nn.Linear(2 * width, num_classes))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 projection shortcut when stride or width changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def resnet(
    input_shape: Sequence[int], num_classes: int, width: int = 16, depth: Sequence[int] = (1, 1, 1)
) -> nn.Module:
    """ResNet-style net: stages of basic blocks, width doubling and resolution halving per stage.

    `depth` is the number of blocks per stage; ResNet-18 is width 64, depth (2, 2, 2, 2).
    """
    layers: list[nn.Module] = [_conv_bn(input_shape[0], width)]
    in_ch = width
    for stage, blocks in enumerate(depth):
        out_ch = width * 2**stage
        for b in range(blocks):
            layers.append(BasicBlock(in_ch, out_ch, stride=2 if stage > 0 and b == 0 else 1))
            in_ch = out_ch
    body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return _Classifier(body, nn.Linear(in_ch, num_classes))


class _Classifier(nn.Module):
    def __init__(self, features: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU())


ZOO: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "convnet": convnet,
    "resnet": resnet,
    "transformer": transformer,
}
