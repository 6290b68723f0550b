"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone & Liu (2021), *Conflict-Averse Gradient Descent for Multi-task Learning*,
NeurIPS. The update maximises the worst task's improvement inside a ball around the average
gradient ``g_0 = 1/T sum_i g_i`` (eq. 3):

    max_d min_i <g_i, d>   s.t.   ||d - g_0|| <= c ||g_0||,   c in [0, 1).

Its dual (eq. 4) is a problem over the simplex, ``min_w g_w^T g_0 + sqrt(phi) ||g_w||`` with
``g_w = sum_i w_i g_i`` and ``phi = c^2 ||g_0||^2``; the primal solution is
``d = g_0 + sqrt(phi) / ||g_w|| g_w`` (eq. 5), which lies on the ball's boundary. The dual is solved
on the T x T Gram matrix (:func:`mtlbench.methods.solvers_qp.cagrad_weights`: closed form for two
tasks, SLSQP otherwise, as the reference code).

Scale and rescaling. The authors' code (``Cranial-XIX/CAGrad``, ``cagrad(..., rescale)`` and
``overwrite_grad``) and nash-mtl's copy (``AvivNavon/nash-mtl``, ``methods/weight_methods.py``) multiply
the direction by T "to match the sum loss"; Gama & Grassi's ``optimizers/cagrad.py`` does not (it
applies ``g_0 + lambda g_w`` itself, with ``rescale=1``: the ``mean`` objective scale of a run).

- the direction is ``T d`` so that ``c = 0`` gives the sum of the gradients (mtlbench's scale, as
  Cranial-XIX's and nash-mtl's code; a run with objective scale ``mean`` divides by T, as Gama's);
- ``rescale`` 0: no rescaling; 1 (default): divide by ``1 + c^2``; 2: divide by ``1 + c``.

Weights: ``d = sum_i (1/T + lambda w_i) g_i`` with ``lambda = c ||g_0|| / ||g_w||``; Gama's code logs
``1/T + lambda w``. mtlbench reports the effective coefficients of ``T d`` before the rescaling,
``c_i = 1 + T lambda w_i`` (they sum to ``T (1 + lambda)``). Heads get their own plain gradient.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram
from mtlbench.methods.solvers_qp import cagrad_weights

_GRID = {"c": (0.2, 0.5, 0.8)}


@register_method
class CAGrad(GradientMethod):
    """Conflict-averse direction ``g_0 + c ||g_0|| g_w / ||g_w||`` (Liu et al. 2021, eqs. 3-5), scaled by T."""

    name = "cagrad"
    title = "CAGrad"
    citation = "Liu, Liu, Jin, Stone & Liu, Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021"
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter(
            "c",
            0.5,
            "radius of the ball around the mean gradient, relative to its norm (000's best: 0.2 CL_CR, "
            "0.8 CL_RR, 0.5 RL_RR)",
            low=0.0,
            high=1.0,
            high_inclusive=False,
        ),
        Hyperparameter(
            "rescale",
            1,
            "global rescaling of the direction: 0 none, 1 divide by 1+c^2 (reference default), 2 by 1+c",
            kind="int",
            choices=(0, 1, 2),
        ),
    )
    grids: ClassVar[dict[str, dict[str, tuple[Any, ...]]]] = {"multi_mnist": _GRID, "cityscapes": _GRID, "qm9": _GRID}
    stateless = True
    min_tasks = 1

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
        c = float(self.hparams["c"])
        K = gram(gradients)
        w = torch.from_numpy(cagrad_weights(K.cpu().numpy(), c))
        g0_norm = math.sqrt(max(float(K.sum()) / n**2, 0.0))
        gw_norm = math.sqrt(max(float(w @ K.cpu() @ w), 0.0))
        lam = c * g0_norm / gw_norm if gw_norm > 0.0 else 0.0
        coefficients = 1.0 + n * lam * w  # T * (1/T + lambda w)
        divisor = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[int(self.hparams["rescale"])]
        weights = coefficients.to(device=gradients.device, dtype=gradients.dtype)
        direction = (weights / divisor) @ gradients
        info = {"lambda": lam}
        return Aggregation(direction, weights, state, info)
