"""AvgNorm: loss weights that give every task gradient the norm of the summed gradient.

Guo et al. (002), *Revisit the Imbalance Optimization in Multi-task Learning: An Experimental
Analysis*, section "A simple strategy based on gradient norm", eq. 6:

    w_i = S / ||grad_theta L_i||,   S = ||sum_j grad_theta L_j||,

with theta the last layer of the shared backbone (002: "the gradient of the last layer of the
shared backbone can be sufficient"). Each step computes the T gradients on that layer, then
backpropagates sum_i w_i L_i with w treated as constants, so ||w_i g_i|| = S for every task.

The weights are reported as applied (effective coefficients; they do not sum to T). The layer is
``context.model.last_shared_layer`` once the trainer has attached a context; without one (a bare
loop) or with ``layer=all``, all shared parameters. Gradient norms are floored at 1e-12.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods._loss_based import measured_parameters
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind, StepResult, TrainingContext
from mtlbench.methods.gradients import per_task_gradients
from mtlbench.methods.hyperparameters import Hyperparameter

FLOOR = 1e-12


@register_method
class AvgNorm(LossWeightingMethod):
    """w_i = ||sum_j g_j|| / ||g_i|| on the last shared layer (Guo et al., eq. 6)."""

    name = "avgnorm"
    title = "AvgNorm"
    citation = "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning: An Experimental Analysis (arXiv)"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter(
            "layer",
            "last",
            "where gradient norms are measured: the last shared layer or all shared parameters",
            kind="str",
            choices=("last", "all"),
        ),
    )
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.context: TrainingContext | None = None

    def attach(self, context: TrainingContext) -> None:
        self.context = context

    @staticmethod
    def weights_from_gradients(gradients: Tensor) -> Tensor:
        """w_i = ||sum_j g_j|| / ||g_i|| for a (T, D) gradient matrix."""
        total = gradients.sum(dim=0).norm()
        return total / gradients.norm(dim=1).clamp_min(FLOOR)

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        measured = measured_parameters(self.context, shared_parameters, self.hparams["layer"])
        gradients, _ = per_task_gradients(losses, measured, retain_graph=True)
        weights = self.weights_from_gradients(gradients).to(losses.dtype).detach()
        (weights * losses).sum().backward()
        return StepResult(weights)
