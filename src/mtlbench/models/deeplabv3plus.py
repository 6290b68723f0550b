"""001's "DeepLabV3+" and the real DeepLab v3+ decoder, one per task on a shared dilated ResNet.

- ``deeplabv3plus`` (001 section 4.1 and A3; REFERENCE-DATA 1c): what 001 ran through LibMTL's NYU
  example (median-research-group/LibMTL ``examples/nyu/main.py``, ``LibMTL/model/resnet_dilated.py``,
  ``LibMTL/model/decoder/DeepLabHead.py``): a dilated ResNet-50 (output stride 8) shared, one DeepLab v3
  ASPP head per task (rates 12/24/36, 256 channels, dropout in the projection) upsampled bilinearly
  (align_corners=True) to the input size. It is the ``aspp`` model with ResNet-50 at full width; the
  head is :class:`mtlbench.models.deeplab.DeepLabHead`. The encoder output (B, 32w, H/8, W/8) is z.
- ``deeplabv3plus_decoder`` (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution";
  the head as VainF/DeepLabV3Plus-Pytorch ``network/_deeplab.py`` ``DeepLabHeadV3Plus``): a dilated
  ResNet at output stride 16, and per task ASPP (rates 6/12/18) on its last map, bilinear upsampling
  (align_corners=False) to the stride-4 map of ``layer1``, concatenation with a 1x1 conv-BN-ReLU
  reduction of ``layer1`` to 48 channels (3w/4), two 3x3 conv-BN-ReLU of 256 channels (the paper's
  best decoder, its Table 2; VainF's head has one), a 1x1 classifier and bilinear upsampling to the
  input. The heads read two shared maps, so z packs both into one tensor exactly:
  cat(layer4, pixel_unshuffle(layer1, 4)) on the channels, (B, 32w + 16 * 4w, H/16, W/16); each
  head unpacks it with pixel_shuffle (a permutation). Representation-level methods are exact on it
  (every path from the input to a loss crosses it); rotating it would mean nothing (RotoGrad refuses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.deeplab import ASPP, DeepLabHead, _conv_bn_relu
from mtlbench.models.resnet import DilatedResNet

#: ASPP rates at output stride 16 (DeepLab v3/v3+; 12/24/36 at stride 8)
RATES_OS16 = (6, 12, 18)
#: stride of ``layer1`` relative to that of the encoder output (4 vs 16)
LOW_LEVEL_RATIO = 4


def deeplabv3plus(
    outputs: Mapping[str, int],
    size: tuple[int, int],
    *,
    encoder: str = "resnet50",
    width: int = 64,
    dropout: float = 0.0,
) -> MultiTaskModel:
    """001's DeepLabV3+: dilated ResNet (output stride 8) and one ASPP head per task (``size`` = (H, W))."""
    backbone = DilatedResNet(encoder, width=width)
    heads = {
        name: DeepLabHead(backbone.out_channels, n, size, channels=4 * width, dropout=dropout)
        for name, n in outputs.items()
    }
    model = MultiTaskModel(backbone, heads, representation_size=backbone.out_channels)
    model.architecture = "deeplabv3plus"
    return model


class LowLevelEncoder(nn.Module):
    """A dilated ResNet at output stride 16 whose output packs ``layer4`` and ``layer1`` into one tensor."""

    def __init__(self, encoder: str = "resnet50", *, width: int = 64) -> None:
        super().__init__()
        self.backbone = DilatedResNet(encoder, width=width, output_stride=16)
        self.high_channels = self.backbone.out_channels
        self.low_channels = _layer1_channels(self.backbone)
        self.out_channels = self.high_channels + LOW_LEVEL_RATIO**2 * self.low_channels

    def forward(self, x: Tensor) -> Tensor:
        b = self.backbone
        low = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
        high = b.layer4(b.layer3(b.layer2(low)))
        if low.shape[-2] != LOW_LEVEL_RATIO * high.shape[-2] or low.shape[-1] != LOW_LEVEL_RATIO * high.shape[-1]:
            raise UserInputError(
                f"deeplabv3plus_decoder: the input {tuple(x.shape[-2:])} must have height and width multiples of 16"
            )
        return torch.cat([high, F.pixel_unshuffle(low, LOW_LEVEL_RATIO)], dim=1)


def _layer1_channels(backbone: DilatedResNet) -> int:
    last = backbone.layer1[-1]
    bn = getattr(last, "bn3", None) or last.bn2
    return int(bn.num_features)


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the high-level map, upsampled to the low-level map, concatenated with its 48-channel
    reduction, two 3x3 conv-BN-ReLU, 1x1 classifier, bilinear upsampling to ``size`` = (H, W)."""

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        out_channels: int,
        size: tuple[int, int],
        *,
        channels: int = 256,
        reduced: int = 48,
        rates: Sequence[int] = RATES_OS16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.high_channels = high_channels
        self.aspp = ASPP(high_channels, channels, rates, dropout)
        self.project = nn.Sequential(*_conv_bn_relu(low_channels, reduced))
        self.refine = nn.Sequential(
            *_conv_bn_relu(channels + reduced, channels, 3), *_conv_bn_relu(channels, channels, 3)
        )
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, features: Tensor) -> Tensor:
        high = features[:, : self.high_channels]
        low = F.pixel_shuffle(features[:, self.high_channels :], LOW_LEVEL_RATIO)
        up = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.classifier(self.refine(torch.cat([self.project(low), up], dim=1)))
        return F.interpolate(out, size=self.size, mode="bilinear", align_corners=False)


def deeplabv3plus_decoder(
    outputs: Mapping[str, int],
    size: tuple[int, int],
    *,
    encoder: str = "resnet50",
    width: int = 64,
    dropout: float = 0.0,
) -> MultiTaskModel:
    """The DeepLab v3+ encoder-decoder with one decoder per task; z packs layer4 and layer1."""
    packed = LowLevelEncoder(encoder, width=width)
    reduced = max(1, (48 * width) // 64)
    heads = {
        name: DeepLabV3PlusHead(
            packed.high_channels, packed.low_channels, n, size, channels=4 * width, reduced=reduced, dropout=dropout
        )
        for name, n in outputs.items()
    }
    model = MultiTaskModel(packed, heads, representation_size=None)
    model.representation = "packed"
    model.architecture = "deeplabv3plus_decoder"
    return model
