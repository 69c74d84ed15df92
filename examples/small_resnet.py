"""A small ResNet for 28x28 grayscale images: the model of the "probe your own model" example.

stem (3x3 conv, BN, ReLU) -> layer1 (two residual blocks) -> layer2 (two blocks, stride 2,
twice the width) -> global average pool -> fc. Probe it by module path: ``stem``, ``layer1.0``,
``layer2.1.bn2``, ``fc`` (``probes layers <experiment>`` lists them all).
"""

from __future__ import annotations

from torch import nn


class Block(nn.Module):
    """A basic residual block: two 3x3 convolutions with batch norm, and a projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(Block(width, width), Block(width, width))
        self.layer2 = nn.Sequential(Block(width, 2 * width, stride=2), Block(2 * width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def build(width: int = 16, n_classes: int = 10) -> SmallResNet:
    """The factory a config names: ``model: {factory: "examples/small_resnet.py:build", kwargs: {width: 16}}``."""
    return SmallResNet(width, n_classes)
