"""HRNet-W18 encoder (Wang et al. 2020, "Deep High-Resolution Representation Learning") with timm's names.

002's HRNet setup (section IV-B; MTI-Net's base network; Vandenhende et al.'s ``models/seg_hrnet.py``):
stem (two 3x3 stride-2 conv-BN-ReLU, 64 channels), layer1 (4 bottlenecks, 256 out), then stages 2-4 of 1, 4
and 3 multi-resolution modules with 2, 3, 4 branches of 18/36/72/144 channels (4 basic blocks a branch) and
a fusion after every module (upsampling: 1x1 conv-BN then nearest; downsampling: stride-2 3x3 conv-BNs).
The transitions open each new branch from the last one with a stride-2 3x3 conv-BN-ReLU. Names are timm's
``hrnet_w18`` (``conv1``, ``layer1.0.downsample.0``, ``transition1.1.0.0``, ``stage3.2.fuse_layers.2.0.1.0``);
timm's classification entries (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``)
are not part of the encoder and are ignored on load.

Output: the four branches upsampled bilinearly to the first one's size (H/4, W/4) and concatenated (270
channels), the input of MTI-Net's ``HighResolutionHead`` (:class:`HRNetHead`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.models.resnet import BasicBlock, Bottleneck

STAGES = ((1, 2), (4, 3), (3, 4))  # (modules, branches) of stages 2, 3, 4
BASE_CHANNELS = 18
STEM = 64


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class Upsample(nn.Module):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=float(self.factor), mode="nearest")


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output sums all branches resampled to its resolution."""

    def __init__(self, channels: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c, 1, (1, 1), None) for _ in range(blocks))) for c in channels
        )
        fuse = []
        for i in range(n):
            row: list[nn.Module] = []
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(*_conv_bn(channels[j], channels[i], 1, relu=False), Upsample(2 ** (j - i)))
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [
                        _conv_bn(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, 2, relu=k < i - j - 1)
                        for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for row in self.fuse_layers:
            total = row[0](xs[0])
            for layer, x in zip(row[1:], xs[1:], strict=True):
                total = total + layer(x)
            out.append(self.relu(total))
        return out


class HRNet(nn.Module):
    """HRNet-W18 (``width`` 64 = the real one; smaller widths scale every channel count, ``depth`` the blocks)."""

    def __init__(self, *, width: int = 64, depth: int = 0) -> None:
        super().__init__()
        scale = width / 64
        stem = max(1, round(STEM * scale))
        base = max(1, round(BASE_CHANNELS * scale))
        blocks = depth or 4
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        expanded = stem * Bottleneck.expansion
        downsample = nn.Sequential(nn.Conv2d(stem, expanded, 1, bias=False), nn.BatchNorm2d(expanded))
        layers = [Bottleneck(stem, stem, 1, (1, 1), downsample)]
        layers += [Bottleneck(expanded, stem, 1, (1, 1), None) for _ in range(blocks - 1)]
        self.layer1 = nn.Sequential(*layers)
        previous: tuple[int, ...] = (expanded,)
        for number, (modules, branches) in enumerate(STAGES, start=1):
            channels = tuple(base * 2**b for b in range(branches))
            transition = []
            for b, c in enumerate(channels):
                if b < len(previous):
                    transition.append(_conv_bn(previous[b], c, 3) if previous[b] != c else nn.Identity())
                else:
                    transition.append(nn.Sequential(_conv_bn(previous[-1], c, 3, 2)))
            setattr(self, f"transition{number}", nn.ModuleList(transition))
            setattr(
                self,
                f"stage{number + 1}",
                nn.Sequential(*(HighResolutionModule(channels, blocks) for _ in range(modules))),
            )
            previous = channels
        self.out_channels = sum(previous)
        self.stride = 4
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for number in range(1, len(STAGES) + 1):
            transition = getattr(self, f"transition{number}")
            xs = [layer(xs[min(b, len(xs) - 1)]) for b, layer in enumerate(transition)]
            xs = getattr(self, f"stage{number + 1}")(xs)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in xs[1:]]
        return torch.cat(ups, 1)
