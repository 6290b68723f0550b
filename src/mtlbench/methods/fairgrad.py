"""FairGrad: alpha-fair resource allocation among tasks.

Ban & Ji (2024), *Fair Resource Allocation in Multi-Task Learning*, ICML. The update
``d = sum_i w_i g_i`` maximises the alpha-fair utility of the tasks' improvements ``g_i^T d``; its
weights solve (eq. 9, Algorithm 1)

    G^T G w = w^(-1/alpha),   w > 0,

(``alpha = 1`` gives Nash-MTL's equation, ``alpha -> 0`` the linear scalarisation). The official code
(``OptMN-Lab/fairgrad``, ``FairGrad.fairgrad``) finds ``w`` with ``scipy.optimize.least_squares`` from
``1/T``; here the unique solution is computed exactly by Newton's method on its strictly convex
potential (:func:`mtlbench.methods.solvers_qp.power_balance`). Where no solution exists (the
gradients' hull contains zero) the reference's ``least_squares`` answer is used and
``info["count_solver_fallback"] = 1``.

As the official code: the shared direction is ``T sum_i w_i g_i`` ("to match the sum loss"), so the
weights reported are ``T w``; the shared gradient is clipped to norm ``max_norm = 1.0`` after the
backward pass (``clip_grad_norm_(shared_parameters, max_norm)``); heads get their own plain gradient
(each task's loss is backpropagated separately). Default ``alpha = 1.0`` (the official default; the
paper tunes it per benchmark).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient, StepResult
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram
from mtlbench.methods.solvers_qp import power_balance


def fairgrad_weights(K: np.ndarray, alpha: float) -> tuple[np.ndarray, bool]:
    """``w > 0`` with ``K w = w^(-1/alpha)``; the flag says whether the reference fallback was used."""
    w = power_balance(K, 1.0 / alpha)
    if w is not None:
        return w, False
    n = K.shape[0]
    result = least_squares(lambda x: K @ x - np.power(1.0 / x, 1.0 / alpha), np.full(n, 1.0 / n), bounds=(0, np.inf))
    return result.x, True


@register_method
class FairGrad(GradientMethod):
    """alpha-fair weights ``G^T G w = w^(-1/alpha)`` (Ban & Ji 2024, eq. 9), direction scaled by T."""

    name = "fairgrad"
    title = "FairGrad"
    citation = "Ban & Ji, Fair Resource Allocation in Multi-Task Learning, ICML 2024"
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter(
            "alpha", 1.0, "fairness exponent (1: proportional fairness, as Nash-MTL)", low=0.0, low_inclusive=False
        ),
        Hyperparameter(
            "max_norm",
            1.0,
            "clip the shared parameters' gradient to this norm after backward (0: no clipping)",
            low=0.0,
        ),
    )
    stateless = True

    def combine(
        self,
        gradients: Tensor,
        *,
        losses: Tensor | None = None,
        features: Tensor | None = None,
        state: Any = None,
        generator: torch.Generator | None = None,
    ) -> Aggregation:
        n = gradients.shape[0]
        w, fallback = fairgrad_weights(gram(gradients).cpu().numpy(), float(self.hparams["alpha"]))
        weights = torch.from_numpy(n * w).to(device=gradients.device, dtype=gradients.dtype)
        info = {"count_solver_fallback": 1.0} if fallback else {}
        return Aggregation(weights @ gradients, weights, state, info)

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        shared = [p for p in shared_parameters if p.requires_grad]
        result = super().backward(losses, shared, features=features, task_parameters=task_parameters)
        max_norm = float(self.hparams["max_norm"])
        if max_norm > 0 and shared:
            result.info["shared_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(shared, max_norm))
        return result
