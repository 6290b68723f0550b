"""HRNet-W18 encoders (Wang et al. 2020, "Deep High-Resolution Representation Learning") with timm's names.

002's HRNet setup (section IV-B: MTI-Net's base network, following Vandenhende et al.'s code,
``models/seg_hrnet.py`` and ``models/model_info/hrnet_w18.yml`` of SimonVandenhende/Multi-Task-Learning-PyTorch,
the segmentation variant of HRNet): stem (two 3x3 stride-2 conv-BN-ReLU, 64 channels), layer1 (bottlenecks,
256 out), then stages 2-4 with 2, 3, 4 branches of 18/36/72/144 channels and a fusion after every module
(from a lower resolution: 1x1 conv-BN then bilinear resizing to the target branch, as seg_hrnet; timm's
classification HRNet upsamples by nearest, ``fusion="nearest"``; to a lower resolution: stride-2 3x3
conv-BNs). The transitions open each new branch from the last one with a stride-2 3x3 conv-BN-ReLU. Batch
norm momentum 0.01 (seg_hrnet's ``BN_MOMENTUM``).

- ``hrnet_w18``: HRNet-W18 (layer1 4 bottlenecks; 1, 4, 3 modules; 4 basic blocks a branch), timm ``hrnet_w18``;
- ``hrnet_w18_small_v2``: HRNet-W18-Small-v2 (2 bottlenecks; 1, 3, 2 modules; 2 blocks a branch), the network
  MTI-Net's code builds as ``hrnet_w18`` (its yml; weights ``hrnet_w18_small_model_v2.pth``), timm
  ``hrnet_w18_small_v2``.

Names are timm's (``conv1``, ``layer1.0.downsample.0``, ``transition1.1.0.0``, ``stage3.2.fuse_layers.2.0.1.0``);
timm's classification entries (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``)
are not part of the encoder and are ignored on load.

Output: the four branches resized bilinearly to the first one's size (H/4, W/4) and concatenated (270
channels), the input of MTI-Net's ``HighResolutionHead`` (:class:`mtlbench.models.encoders.HRNetHead`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.models.resnet import BasicBlock, Bottleneck

#: name -> (layer1 bottlenecks, modules of stages 2, 3, 4, basic blocks a branch)
CONFIGS = {"hrnet_w18": (4, (1, 4, 3), 4), "hrnet_w18_small_v2": (2, (1, 3, 2), 2)}
BASE_CHANNELS = 18
STEM = 64
BN_MOMENTUM = 0.01


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output sums all branches resampled to its resolution."""

    def __init__(self, channels: tuple[int, ...], blocks: int, fusion: str = "bilinear") -> None:
        super().__init__()
        self.fusion = fusion
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c, 1, (1, 1), None) for _ in range(blocks))) for c in channels
        )
        fuse = []
        for i in range(n):
            row: list[nn.Module] = []
            for j in range(n):
                if j > i:
                    row.append(_conv_bn(channels[j], channels[i], 1, relu=False))
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
        for i, row in enumerate(self.fuse_layers):
            total = xs[i]
            for j, (layer, x) in enumerate(zip(row, xs, strict=True)):
                if j == i:
                    continue
                y = layer(x)
                if j > i and self.fusion == "bilinear":  # from a lower resolution
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                elif j > i:
                    y = F.interpolate(y, scale_factor=float(2 ** (j - i)), mode="nearest")
                total = total + y
            out.append(self.relu(total))
        return out


class HRNet(nn.Module):
    """HRNet-W18 or W18-Small-v2 (``width`` 64 = the real one; smaller widths scale every channel count,
    ``depth`` > 0 sets the blocks of layer1 and of every branch)."""

    def __init__(self, name: str = "hrnet_w18", *, width: int = 64, depth: int = 0, fusion: str = "bilinear") -> None:
        super().__init__()
        stem_blocks, stage_modules, branch_blocks = CONFIGS[name]
        scale = width / 64
        stem = max(1, round(STEM * scale))
        base = max(1, round(BASE_CHANNELS * scale))
        stem_blocks, blocks = (depth, depth) if depth else (stem_blocks, branch_blocks)
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        expanded = stem * Bottleneck.expansion
        downsample = nn.Sequential(
            nn.Conv2d(stem, expanded, 1, bias=False), nn.BatchNorm2d(expanded, momentum=BN_MOMENTUM)
        )
        layers = [Bottleneck(stem, stem, 1, (1, 1), downsample)]
        layers += [Bottleneck(expanded, stem, 1, (1, 1), None) for _ in range(stem_blocks - 1)]
        self.layer1 = nn.Sequential(*layers)
        previous: tuple[int, ...] = (expanded,)
        for number, (modules, branches) in enumerate(zip(stage_modules, (2, 3, 4), strict=True), start=1):
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
                nn.Sequential(*(HighResolutionModule(channels, blocks, fusion) for _ in range(modules))),
            )
            previous = channels
        self.out_channels = sum(previous)
        self.stride = 4
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                module.momentum = BN_MOMENTUM  # the blocks' too (seg_hrnet)
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for number in (1, 2, 3):
            transition = getattr(self, f"transition{number}")
            xs = [layer(xs[min(b, len(xs) - 1)]) for b, layer in enumerate(transition)]
            xs = getattr(self, f"stage{number + 1}")(xs)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in xs[1:]]
        return torch.cat(ups, 1)
