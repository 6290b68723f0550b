"""Unit. Scal.: the plain sum of the losses.

Kurin et al. (2022), *In Defense of the Unitary Scalarization for Deep Multi-Task Learning*, eq. 1:
minimise sum_i L_i. With mtlbench's convention (weights sum to T) its weights are all ones.
As a gradient combination it is the sum of the task gradients, d = sum_i g_i.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient, LossWeightingMethod, MethodKind


@register_method
class UnitScalarization(LossWeightingMethod):
    """Sum of the losses, weights all ones (Kurin et al. 2022, eq. 1)."""

    name = "unit_scal"
    title = "Unit. Scal."
    citation = "Kurin et al., In Defense of the Unitary Scalarization for Deep Multi-Task Learning, NeurIPS 2022"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return losses.sum(), torch.ones(self.n_tasks, device=losses.device)


@register_method
class SumOfGradients(GradientMethod):
    """Unit. Scal. as a gradient combination: d = sum_i g_i (for ``aggregate`` and the toy problem)."""

    name = "sum"
    title = "Sum of gradients"
    citation = UnitScalarization.citation
    default_space = "parameters"

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        weights = torch.ones(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)
        return Aggregation(gradients.sum(dim=0), weights, state)
