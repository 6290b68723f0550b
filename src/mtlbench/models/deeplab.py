"""DeepLab v3 task heads (Chen et al. 2017, "Rethinking Atrous Convolution"), one per task (000 section 3.3).

As Gama & Grassi's ``DeepLabHead``: ASPP (a 1x1 branch, three 3x3 branches with atrous rates 12/24/36
and an image-pooling branch; each conv-BN-ReLU with ``channels`` outputs), a 1x1 projection of the
concatenation (BN, ReLU, dropout p), a 3x3 conv-BN-ReLU, a 1x1 classifier to the task's outputs, then
bilinear upsampling (align_corners=True) to the input resolution. ``channels`` is 256 in their code;
mtlbench scales it with the encoder width (4 * width, 256 at width 64).

Outputs are raw: logits for segmentation (their head returned log-softmax for an NLL loss, which is the
same loss as cross-entropy on logits), disparity (1 channel) and instance offsets (2 channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

DEFAULT_RATES = (12, 24, 36)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation if kernel == 3 else 0
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv-BN-ReLU, upsampled back to the map size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with ``rates`` and a projection with dropout ``p``."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int] = DEFAULT_RATES, p: float = 0.0) -> None:
        super().__init__()
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, channels))]
        branches += [nn.Sequential(*_conv_bn_relu(in_channels, channels, 3, rate)) for rate in rates]
        branches.append(ASPPPooling(in_channels, channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * channels, channels), nn.Dropout(p))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Module):
    """ASPP -> 3x3 conv-BN-ReLU -> 1x1 to ``out_channels`` -> bilinear upsampling to ``size`` = (H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: tuple[int, int],
        *,
        channels: int = 256,
        rates: Sequence[int] = DEFAULT_RATES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.aspp = ASPP(in_channels, channels, rates, dropout)
        self.refine = nn.Sequential(*_conv_bn_relu(channels, channels, 3))
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, features: Tensor) -> Tensor:
        out = self.classifier(self.refine(self.aspp(features)))
        return F.interpolate(out, size=self.size, mode="bilinear", align_corners=True)
