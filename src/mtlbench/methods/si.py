"""SI: the scale-invariant baseline, the sum of the log losses.

Navon et al. (2022), *Multi-Task Learning as a Bargaining Game*, ICML (the Nash-MTL paper),
baseline of its experiments: minimise sum_i log L_i, invariant to any per-task loss scale. Its gradient is
sum_i g_i / L_i, so the effective coefficients are 1 / L_i.

Reported weights (mtlbench's Conventions): the coefficients normalised to sum T,
w_i = T (1/L_i) / sum_j (1/L_j); the applied direction is ``scale`` * sum_i w_i g_i with the global
factor ``scale`` = sum_j (1/L_j) / T (see :meth:`ScaleInvariant.scale`; not put in the step's ``info``,
which would synchronise an accelerator every step). Gama & Grassi's code weights
each log by 1/T (its Unit. Scal. is the mean), the same ratio to Unit. Scal. as here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind


@register_method
class ScaleInvariant(LossWeightingMethod):
    """sum_i log L_i (Navon et al. 2022); weights 1/L_i reported normalised to sum T."""

    name = "si"
    title = "SI"
    citation = "Navon et al., Multi-Task Learning as a Bargaining Game, ICML 2022 (scale-invariant baseline)"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        inverse = 1.0 / losses.detach()
        return torch.log(losses).sum(), self.n_tasks * inverse / inverse.sum()

    def scale(self, losses: Tensor) -> Tensor:
        """The global factor between the applied coefficients 1/L_i and the reported weights."""
        return (1.0 / losses.detach()).sum() / self.n_tasks
