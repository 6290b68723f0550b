"""UPGrad: unconflicting projection of gradients (Jacobian descent).

Quinton & Rey (2024), *Jacobian Descent for Multi-Objective Optimization* (TorchJD). Each task
gradient ``g_i`` is projected onto the dual cone of the gradients ``{x : g_j^T x >= 0 for all j}``
(eq. 3) and the projections are averaged (eq. 5). By their Proposition 1 the projection of
``J^T u`` is ``J^T v`` with ``v = argmin_v v^T G v s.t. v >= u`` (``G = J J^T`` the Gram matrix), so
only T small quadratic programs on the T x T Gram matrix are solved
(:func:`mtlbench.methods.solvers_qp.dual_cone_weights`, exact non-negative least squares).

As TorchJD's ``UPGradWeighting`` defaults: preference vector ``1/T`` (the mean), the Gram matrix
normalised by its trace (zero if the trace is below ``norm_eps = 1e-4``) and regularised with
``reg_eps = 1e-4`` on the diagonal. TorchJD's zero Gram matrix makes a step whose gradients have a
squared norm below ``norm_eps`` in all the plain sum (nothing is projected; late in training that can
be every step): ``small_gram=sum``, the default. ``small_gram=project`` normalises by the trace
whatever its size (only all-zero gradients give the zero matrix), so UPGrad stays scale-free.
TorchJD's weights ``w = sum_i v_i`` give the mean of the projections; mtlbench reports ``T w`` and
uses the sum of the projections, so that without any conflict (all ``g_i^T g_j >= 0``) the weights
are all ones, the sum of the gradients. Every
``g_i^T d >= 0`` (up to the regularisation). Heads get their own plain gradient (TorchJD's
``mtl_backward``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram
from mtlbench.methods.solvers_qp import dual_cone_weights


@register_method
class UPGrad(GradientMethod):
    """Sum of the projections of each gradient onto the dual cone of all gradients (Quinton & Rey 2024)."""

    name = "upgrad"
    title = "UPGrad"
    citation = "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, arXiv:2406.16232, 2024"
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter("norm_eps", 1e-4, "Gram matrices with a smaller trace count as zero (TorchJD)", low=0.0),
        Hyperparameter("reg_eps", 1e-4, "added to the diagonal of the normalised Gram matrix (TorchJD)", low=0.0),
        Hyperparameter(
            "small_gram",
            "sum",
            "a Gram trace below norm_eps: zero matrix, the plain sum (TorchJD) or project anyway (scale-free)",
            kind="str",
            choices=("sum", "project"),
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
        K = gram(gradients).cpu().numpy()
        trace = float(np.trace(K))
        small = trace < float(self.hparams["norm_eps"]) and self.hparams["small_gram"] == "sum"
        normalised = np.zeros_like(K) if small or not trace > 0.0 else K / trace
        regularised = normalised + float(self.hparams["reg_eps"]) * np.eye(n)
        preference = np.eye(n) / n
        # reg_eps = 0 and zero gradients: nothing to project
        projections = dual_cone_weights(regularised, preference) if np.any(regularised) else preference
        weights = torch.from_numpy(n * projections.sum(axis=0)).to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(weights @ gradients, weights, state, {})
