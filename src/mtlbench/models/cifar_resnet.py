"""The CIFAR-style ResNet-18 of MGDA-UB's and 003's CelebA experiments (``models/multi_faces_resnet.py``).

Sener & Koltun's (2018) multi-task CelebA encoder, kept by Kurin et al. (003, section 4.1.2): a 3x3
stem convolution with stride 1 and no max-pool, four stages of two BasicBlocks (64, 128, 256, 512
channels; stride 1, 2, 2, 2), then ``avg_pool2d(4)`` and a flatten. On 64x64 inputs the last stage
is 8x8, the pooling leaves 512 x 2 x 2 and the shared representation has **2048** features. The
heads are ``Linear(2048, 2)`` followed by log-softmax (``FaceAttributeDecoder``).

``dropout_layout``:

- ``none``: MGDA-UB's architecture;
- ``kurin``: 003's additions (``--dropout`` in its ``scripts/celeba.sh``): Dropout2d(0.25) after the
  stem, Dropout2d(0.5) inside every BasicBlock between its first convolution's ReLU and the second
  convolution, and dropout 0.5 on the 2048-d flattened feature. The last is ``nn.Dropout2d`` applied
  to a (B, 2048) tensor in 003's code, which zeroes single features; it is written here as
  ``nn.Dropout(0.5)``, the same operation (newer torch warns about a 2-D input to Dropout2d).

Convolutions and batch norms keep torch's default initialisation, as the reference code does.
``width`` (64 in the papers) scales every stage for tests and CPU runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel

DROPOUT_LAYOUTS = ("kurin", "none")
#: 003's fixed rates: after the stem, inside each block, on the flattened feature
KURIN_RATES = (0.25, 0.5, 0.5)


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions, a 1x1 projection shortcut where the shape changes, optional Dropout2d between."""

    def __init__(self, in_channels: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.dropout is not None:
            out = self.dropout(out)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """The shared encoder: images (B, 3, S, S) -> features (B, 8 * width * (S / 32)^2)."""

    def __init__(self, *, width: int = 64, dropout_layout: str = "none", image_size: int = 64) -> None:
        super().__init__()
        if dropout_layout not in DROPOUT_LAYOUTS:
            raise UserInputError(
                f"dropout_layout {dropout_layout!r} is invalid; choose one of: {', '.join(DROPOUT_LAYOUTS)}"
            )
        if width < 1:
            raise UserInputError(f"encoder width {width} must be a positive number of channels")
        if image_size < 32 or image_size % 32:
            raise UserInputError(f"image size {image_size} must be a positive multiple of 32")
        stem, block, feature = KURIN_RATES if dropout_layout == "kurin" else (0.0, 0.0, 0.0)
        self.dropout_layout = dropout_layout
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.stem_dropout = nn.Dropout2d(stem) if stem > 0 else nn.Identity()
        channels = width
        stages = []
        for index, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**index
            stages.append(
                nn.Sequential(
                    CifarBasicBlock(channels, planes, stride, block), CifarBasicBlock(planes, planes, 1, block)
                )
            )
            channels = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dropout = nn.Dropout(feature) if feature > 0 else nn.Identity()
        self.out_features = channels * (image_size // 32) ** 2

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem_dropout(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4).flatten(1)
        return self.feature_dropout(out)


class LogSoftmaxHead(nn.Module):
    """``Linear(in, classes)`` then log-softmax over the classes (MGDA-UB's ``FaceAttributeDecoder``)."""

    def __init__(self, in_features: int, classes: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, classes)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.linear(x), dim=1)


def build_cifar_resnet(
    heads: Mapping[str, nn.Module], *, width: int = 64, dropout_layout: str = "none", image_size: int = 64
) -> MultiTaskModel:
    """The multi-task model: :class:`CifarResNet18` shared, the given heads on its flattened features."""
    encoder = CifarResNet18(width=width, dropout_layout=dropout_layout, image_size=image_size)
    return MultiTaskModel(encoder, heads, representation_size=encoder.out_features)


def feature_size(width: int, image_size: int) -> int:
    """Features of :class:`CifarResNet18` on ``image_size`` inputs: 8 * width * (image_size / 32)^2."""
    return 8 * width * (image_size // 32) ** 2
