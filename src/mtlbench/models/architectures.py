"""The dense problems' ``model`` option: which network maps an image to the tasks' dense outputs.

``aspp`` (000's dilated ResNet with one DeepLab ASPP head per task; the problem builds it), ``segnet``
and ``segnet_mtan`` (MTAN's code; :mod:`mtlbench.models.segnet`, :mod:`mtlbench.models.segnet_mtan`),
``deeplabv3plus`` (001's LibMTL network) and ``deeplabv3plus_decoder`` (the v3+ decoder;
:mod:`mtlbench.models.deeplabv3plus`). The ``encoder`` option (ResNet-18/50) is the backbone of the
ResNet models; SegNet models have their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel

MODELS = ("aspp", "segnet", "segnet_mtan", "deeplabv3plus", "deeplabv3plus_decoder")
MODEL_HELP = "architecture: " + ", ".join(MODELS) + " (README, Models)"
#: the size divisor each model needs (five poolings for SegNet, output stride 16 for the v3+ decoder)
DIVISORS = {"aspp": 1, "segnet": 32, "segnet_mtan": 32, "deeplabv3plus": 1, "deeplabv3plus_decoder": 16}


def check_model(problem: str, model: str, height: int, width: int, *, encoder_weights: str = "") -> None:
    """One-line errors for a resolution the model cannot take, or weights it cannot load."""
    if model not in MODELS:
        raise UserInputError(f"{problem}: unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    divisor = DIVISORS[model]
    if height % divisor or width % divisor:
        raise UserInputError(
            f"{problem}: model {model} needs a resolution whose width and height are multiples of {divisor}; "
            f"got {width}x{height}"
        )
    if encoder_weights and model.startswith("segnet"):
        raise UserInputError(f"{problem}: option encoder_weights is for ResNet encoders, not model {model}")


def build(
    model: str,
    outputs: Mapping[str, int],
    size: tuple[int, int],
    *,
    encoder: str,
    width: int,
    dropout: float = 0.0,
    encoder_weights: str = "",
) -> MultiTaskModel:
    """The network ``model`` (not ``aspp``, which each problem builds with its own heads) for ``outputs``
    (task name -> output channels) at input ``size`` = (H, W)."""
    from mtlbench.models.deeplabv3plus import deeplabv3plus, deeplabv3plus_decoder
    from mtlbench.models.resnet import load_encoder_weights
    from mtlbench.models.segnet import segnet
    from mtlbench.models.segnet_mtan import segnet_mtan

    if model == "segnet":
        return segnet(outputs, width=width)
    if model == "segnet_mtan":
        return segnet_mtan(outputs, width=width)
    if model in ("deeplabv3plus", "deeplabv3plus_decoder"):
        make = deeplabv3plus if model == "deeplabv3plus" else deeplabv3plus_decoder
        built = make(outputs, size, encoder=encoder, width=width, dropout=dropout)
        if encoder_weights:
            load_encoder_weights(getattr(built.encoder, "backbone", built.encoder), encoder_weights)
        return built
    raise UserInputError(f"unknown model {model!r}; choose one of: {', '.join(m for m in MODELS if m != 'aspp')}")
