"""EDM: the equiangular direction ("follow the bisector").

Katrutsa, Merkulov, Tursynbek & Oseledets (2020), *Follow the bisector: a simple method for
multi-objective optimization*, arXiv:2007.06937. With unit gradients u_i = g_i / ||g_i||:

    w* = argmin_{w in simplex} || sum_i w_i u_i ||^2          (min-norm point of the unit gradients)
    d  = gamma * sum_i w*_i u_i,    gamma = 1 / sum_i (w*_i / ||g_i||),

so d has the same angle with every g_i whose w*_i > 0 (always at T = 2), and the effective weights
are c_i = gamma w*_i / ||g_i|| (they sum to 1; Gama & Grassi log them as ``edm_weights``). For T = 2
this is 000's Proposition 4, d = (1/||g_1|| + 1/||g_2||)^{-1} (u_1 + u_2).

The min-norm problem is solved exactly on the T x T cosine matrix
(:func:`~mtlbench.methods.solvers.min_norm_weights`) where the reference code (Gama & Grassi's
``optimizers/edm.py``, the authors' and MTL_TaskTensioner's) runs Frank-Wolfe (<= 250 steps,
tolerance 1e-5). A zero task gradient makes the shared direction zero, as in the reference code
(counted in ``solver_fallback``). Heads get their plain own-task gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.solvers import combine_rows, gram, min_norm_weights


def edm_coefficients(gram_matrix: Tensor) -> tuple[Tensor, Tensor] | None:
    """(c, w): w the min-norm weights of the unit gradients, c = gamma w / ||g|| (None if a gradient is 0)."""
    G = gram_matrix.detach().to("cpu", torch.float64)
    norms = G.diagonal().clamp_min(0.0).sqrt()
    if bool((norms == 0).any()) or not bool(torch.isfinite(G).all()):
        return None
    w = min_norm_weights(G / torch.outer(norms, norms))
    gamma = 1.0 / (w / norms).sum()
    return gamma * w / norms, w


@register_method
class EDM(GradientMethod):
    """Direction with equal angles to all task gradients (Katrutsa et al. 2020)."""

    name = "edm"
    title = "EDM"
    citation = (
        "Katrutsa, Merkulov, Tursynbek & Oseledets, Follow the bisector: a simple method for "
        "multi-objective optimization, arXiv:2007.06937, 2020"
    )
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    stateless = True
    randomized = False

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        solved = edm_coefficients(gram(gradients))
        if solved is None:
            zeros = torch.zeros(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)
            return Aggregation(torch.zeros_like(gradients[0]), zeros, state, {"count_solver_fallback": 1})
        coefficients, _ = solved
        weights = coefficients.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(combine_rows(coefficients, gradients), weights, state)
