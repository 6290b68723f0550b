"""Optimizer helpers: where PyTorch's fused optimizer kernels can be used."""

from __future__ import annotations

from collections.abc import Iterable

import torch

#: device types with PyTorch's fused Adam/AdamW/SGD kernels
FUSED_DEVICES = ("cpu", "cuda")


def fused_supported(parameters: Iterable[torch.Tensor]) -> bool:
    """True if PyTorch's fused optimizer kernels accept these parameters (floating point, CPU or CUDA)."""
    parameters = list(parameters)
    return bool(parameters) and all(
        p.is_floating_point() and p.device.type in FUSED_DEVICES and not p.is_sparse for p in parameters
    )

