"""GradNorm: learned loss weights that balance the tasks' gradient norms and training rates.

Chen, Badrinarayanan, Lee & Rabinovich (2018), *GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks*, ICML, section 3 and Algorithm 1. With W the last shared
layer and weights w_i(t) (initialised at 1):

- G_i = ||grad_W w_i L_i|| = w_i ||grad_W L_i||,  G_bar = mean_i G_i;
- inverse training rate r_i = Ltilde_i / mean_j Ltilde_j with Ltilde_i = L_i(t) / L_i(0);
- L_grad = sum_i |G_i - sg[G_bar r_i^alpha]| (eq. 2; the target is a constant), minimised over
  w only, by the weights' own optimizer (Adam here);
- the network is updated with sum_i w_i(t) L_i; then w is renormalised to sum to T.

alpha (default 1.5, the paper's usual value) is the asymmetry. The weights' learning rate defaults
to the main one (``context.lr``; 1e-3 without a context), as LibMTL trains them in the main
optimizer. L_i(0) is the loss of the first step (the paper's t = 0). Weights pushed below 1e-8
are floored there before renormalising (the paper does not say how negative weights are handled).

LibMTL's ``GradNorm`` differs: w = T softmax(s) (positive, sum T by construction), gradients on all
shared parameters, equal weights during the first epoch and L_i(0) = the first epoch's mean loss.
The reported weights are w(t), the effective coefficients (they sum to T).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods._loss_based import TaskVector, measured_parameters
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind, StepResult, TrainingContext
from mtlbench.methods.gradients import per_task_gradients
from mtlbench.methods.hyperparameters import Hyperparameter

FLOOR = 1e-8
DEFAULT_LR = 1e-3


def gradnorm_loss(weights: Tensor, norms: Tensor, losses: Tensor, initial_losses: Tensor, alpha: float) -> Tensor:
    """L_grad = sum_i |w_i n_i - sg[mean(w n) r_i^alpha]| (Chen et al. 2018, eq. 2)."""
    grad_norms = weights * norms
    ratio = losses / initial_losses
    rate = ratio / ratio.mean()
    target = (grad_norms.mean() * rate.pow(alpha)).detach()
    return (grad_norms - target).abs().sum()


@register_method
class GradNorm(LossWeightingMethod):
    """Weights learned to minimise sum_i |G_i - G_bar r_i^alpha|, renormalised to sum T (Chen et al. 2018)."""

    name = "gradnorm"
    title = "GradNorm"
    citation = (
        "Chen, Badrinarayanan, Lee & Rabinovich, GradNorm: Gradient Normalization for Adaptive Loss Balancing "
        "in Deep Multitask Networks, ICML 2018"
    )
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter("alpha", 1.5, "asymmetry: strength of the pull towards equal training rates", low=0.0),
        Hyperparameter(
            "lr", None, "Adam learning rate of the weights (default: the main lr)", low=0.0, low_inclusive=False
        ),
        Hyperparameter(
            "layer",
            "last",
            "where gradient norms are measured: the last shared layer or all shared parameters",
            kind="str",
            choices=("last", "all"),
        ),
    )
    stateless = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.task_weights = TaskVector(n_tasks, 1.0)
        lr = self.hparams["lr"] if self.hparams["lr"] is not None else DEFAULT_LR
        self.weights_optimizer = torch.optim.Adam([self.task_weights.value], lr=lr)
        self.initial_losses: Tensor | None = None
        self.context: TrainingContext | None = None

    def attach(self, context: TrainingContext) -> None:
        self.context = context
        if self.hparams["lr"] is None:
            for group in self.weights_optimizer.param_groups:
                group["lr"] = context.lr

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
        norms = gradients.norm(dim=1).detach()
        observed = losses.detach()
        if self.initial_losses is None:
            self.initial_losses = observed.clone()
        w = self.task_weights.value
        current = w.detach().clone().to(losses)
        (current * losses).sum().backward()
        with torch.enable_grad():
            objective = gradnorm_loss(w, norms.to(w), observed.to(w), self.initial_losses.to(w), self.hparams["alpha"])
            (gradient,) = torch.autograd.grad(objective, [w])
        self.weights_optimizer.zero_grad(set_to_none=True)
        w.grad = gradient
        self.weights_optimizer.step()
        with torch.no_grad():
            w.clamp_(min=FLOOR)
            w.mul_(self.n_tasks / w.sum())
        return StepResult(current)

    def extra_state(self) -> dict[str, Any]:
        return {"initial_losses": None if self.initial_losses is None else self.initial_losses.clone()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.initial_losses = state.get("initial_losses")
