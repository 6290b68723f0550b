"""Dilated ResNet-18/50 encoders (He et al. 2016; dilation as DeepLab, Chen et al. 2017).

The shared encoder of 000 section 3.3 (Gama & Grassi's ``ResnetDilated`` around torchvision's ResNet):
the stem, layer1 and layer2 of a ResNet, then layer3 and layer4 with their stride-2 convolutions made
stride 1 and the 3x3 convolutions dilated (output stride 8): in layer3 the formerly strided 3x3
convolution gets dilation 1 and the others 2; in layer4 2 and 4 (output stride 16 dilates layer4 only,
1 and 2). No average pooling, no classifier. The output (B, C, H/8, W/8), C = 8 * width (ResNet-18) or
32 * width (ResNet-50), is the shared representation.

Parameter and buffer names are torchvision's (``conv1.weight``, ``layer2.0.downsample.1.running_var``,
...), so an ImageNet state dict of torchvision's ``resnet18``/``resnet50`` loads with
:func:`load_encoder_weights` (its ``fc.*`` entries are ignored) when ``width`` is 64.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError

ARCHITECTURES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        dilations: tuple[int, int],
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride, dilations[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilations[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided, torchvision's "v1.5") - 1x1 with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        dilations: tuple[int, int],
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilations[0])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class DilatedResNet(nn.Module):
    """ResNet encoder with output stride 8 (default) or 16 (or 32: no dilation)."""

    def __init__(self, architecture: str = "resnet18", *, width: int = 64, output_stride: int = 8) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise UserInputError(f"unknown encoder {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
        if width < 1:
            raise UserInputError(f"encoder width {width} must be a positive number of channels")
        if output_stride not in (8, 16, 32):
            raise UserInputError(f"output stride {output_stride} is not one of 8, 16, 32")
        kind, blocks = ARCHITECTURES[architecture]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.architecture = architecture
        self.width = width
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dilate = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}[output_stride]
        self._in_channels = width
        self.layer1 = self._make_layer(block, width, blocks[0], 1, dilate[0])
        self.layer2 = self._make_layer(block, 2 * width, blocks[1], 2, dilate[1])
        self.layer3 = self._make_layer(block, 4 * width, blocks[2], 2, dilate[2])
        self.layer4 = self._make_layer(block, 8 * width, blocks[3], 2, dilate[3])
        self.out_channels = 8 * width * block.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, count: int, stride: int, dilation: int
    ) -> nn.Sequential:
        # dilation d > 1 replaces the stride: the formerly strided 3x3 gets d // 2, every other 3x3 gets d
        first_stride = stride if dilation == 1 else 1
        first = (max(dilation // 2, 1), dilation) if block is BasicBlock else (max(dilation // 2, 1), 1)
        downsample = None
        out_channels = planes * block.expansion
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                _conv1x1(self._in_channels, out_channels, first_stride), nn.BatchNorm2d(out_channels)
            )
        layers = [block(self._in_channels, planes, first_stride, first, downsample)]
        self._in_channels = out_channels
        layers += [block(out_channels, planes, 1, (dilation, dilation), None) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet_encoder(architecture: str, *, width: int = 64, output_stride: int = 8) -> DilatedResNet:
    return DilatedResNet(architecture, width=width, output_stride=output_stride)


def load_encoder_weights(encoder: nn.Module, source: str | Path | Mapping[str, Tensor]) -> None:
    """Load a torchvision-named state dict (a path to ``torch.save``'d weights, or the dict itself).

    ``fc.*`` entries are dropped and a ``module.`` prefix is stripped; anything else that does not
    match (a missing or extra key, a shape for another width) is an error naming it.
    """
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserInputError(f"encoder weights {path} do not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling errors come in many types
            raise UserInputError(f"encoder weights {path} are not a torch state dict: {error}") from None
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = dict(state["state_dict"])
    if not isinstance(state, Mapping):
        raise UserInputError(f"encoder weights {source} hold a {type(state).__name__}, not a state dict")
    state = {
        key.removeprefix("module."): value for key, value in state.items() if not key.startswith(("fc.", "module.fc."))
    }
    own = encoder.state_dict()
    missing = [key for key in own if key not in state]
    extra = [key for key in state if key not in own]
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise UserInputError(f"encoder weights {source} do not fit the encoder: {detail}")
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserInputError(
                f"encoder weights {source}: {key} has shape {tuple(state[key].shape)}, the encoder needs "
                f"{tuple(value.shape)} (width {getattr(encoder, 'width', '?')}; torchvision weights need width 64)"
            )
    encoder.load_state_dict(state, strict=True)
