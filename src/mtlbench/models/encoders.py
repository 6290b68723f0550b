"""002's backbones (section IV-B, Tables III, IV, VIII) for the ``encoder`` option of ``nyud``/``pascal_context``.

- ``resnet18``, ``resnet50``: dilated ResNet (output stride 8) and one DeepLab ASPP head per task
  (:mod:`mtlbench.models.resnet`, built by the problem as before);
- ``hrnet_w18``, ``hrnet_w18_small_v2`` (the one MTI-Net's code builds): HRNet-W18 and W18-Small-v2
  (:mod:`mtlbench.models.hrnet`), the four branches concatenated at 1/4, and
  MTI-Net's ``HighResolutionHead`` per task (:class:`HRNetHead`);
- ``vit_t16``, ``vit_b16``, ``vit_b16_clip``, ``vit_b14_reg4`` (:mod:`mtlbench.models.vit`) and
  ``samvit_b16`` (:mod:`mtlbench.models.sam_vit`): the last layer's patch features (SAM: its neck) and a
  simple convolutional head per task (:class:`ConvHead`).

Every head's output is bilinearly upsampled by the encoder's stride to the input size. ``width`` (64 = the
real network) and ``depth`` (0 = the real one) shrink the networks for CPU tests; public weights need both
at their defaults. :data:`MANIFESTS` names the key manifests each encoder's modules must match.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel

RESNETS = ("resnet18", "resnet50")
HRNETS = ("hrnet_w18", "hrnet_w18_small_v2")
ENCODERS = (*RESNETS, *HRNETS, "vit_t16", "vit_b16", "vit_b16_clip", "vit_b14_reg4", "samvit_b16")
ENCODER_HELP = (
    "backbone: resnet18/resnet50 (dilated, ASPP heads), hrnet_w18, hrnet_w18_small_v2 (MTI-Net's; MTI-Net "
    "head), vit_t16, vit_b16, "
    "vit_b16_clip, vit_b14_reg4 (DINOv2), samvit_b16 (SAM) (README, Encoders)"
)
#: encoder -> (manifest stem, input size (H, W) of that checkpoint) for each public checkpoint size
MANIFESTS: dict[str, tuple[tuple[str, int], ...]] = {
    "resnet18": (("resnet18", 224),),
    "resnet50": (("resnet50", 224),),
    "hrnet_w18": (("hrnet_w18", 224),),
    "hrnet_w18_small_v2": (("hrnet_w18_small_v2", 224),),
    "vit_t16": (("vit_t16_224", 224), ("vit_t16_384", 384)),
    "vit_b16": (("vit_b16_224", 224), ("vit_b16_384", 384)),
    "vit_b16_clip": (("vit_b16_clip_384", 384),),
    "vit_b14_reg4": (("vit_b14_reg4_518", 518),),
    "samvit_b16": (("samvit_b16_1024", 1024),),
}
#: the size each encoder's input must be a multiple of (patch size; 8 for the dilated ResNets' heads)
DIVISORS = {"resnet18": 8, "resnet50": 8, "hrnet_w18": 32, "hrnet_w18_small_v2": 32, "vit_b14_reg4": 14}


def divisor(encoder: str) -> int:
    return DIVISORS.get(encoder, 16)


class HRNetHead(nn.Module):
    """MTI-Net's ``HighResolutionHead``: 1x1 conv-BN-ReLU on the concatenated branches, 1x1 to the outputs."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.last_layer = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        out = self.last_layer(features)
        return F.interpolate(out, scale_factor=float(self.stride), mode="bilinear", align_corners=False)


class ConvHead(nn.Module):
    """3x3 conv-BN-ReLU to ``channels``, 1x1 to the outputs, bilinear upsampling by the patch size."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, channels: int = 256) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, features: Tensor) -> Tensor:
        out = self.classifier(self.conv(features))
        return F.interpolate(out, scale_factor=float(self.stride), mode="bilinear", align_corners=False)


def build_encoder(name: str, size: tuple[int, int], *, width: int = 64, depth: int = 0) -> nn.Module:
    """The encoder ``name`` for input ``size`` = (H, W) (not the ResNets, which the problems build)."""
    from mtlbench.models.hrnet import HRNet
    from mtlbench.models.sam_vit import SamViT
    from mtlbench.models.vit import VisionTransformer

    if name in HRNETS:
        return HRNet(name, width=width, depth=depth)
    if name == "samvit_b16":
        return SamViT(size, width=width, depth=depth)
    if name in ENCODERS and name not in RESNETS:
        return VisionTransformer(name, size, width=width, depth=depth)
    raise UserInputError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")


def build_model(
    name: str, outputs: Mapping[str, int], size: tuple[int, int], *, width: int = 64, depth: int = 0
) -> MultiTaskModel:
    """``name``'s encoder with one head per task (``outputs``: task -> channels) at input ``size`` = (H, W)."""
    encoder = build_encoder(name, size, width=width, depth=depth)
    stride = int(encoder.stride)
    if name in HRNETS:
        heads = {task: HRNetHead(encoder.out_channels, n, stride) for task, n in outputs.items()}
    else:
        channels = max(1, round(256 * width / 64))
        heads = {task: ConvHead(encoder.out_channels, n, stride, channels=channels) for task, n in outputs.items()}
    model = MultiTaskModel(encoder, heads, representation_size=encoder.out_channels)
    model.architecture = name
    return model
