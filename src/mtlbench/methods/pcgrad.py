"""PCGrad: projecting conflicting gradients.

Yu et al. (2020), *Gradient Surgery for Multi-Task Learning*, NeurIPS, Algorithm 1 / eq. (1): for
each task i, in a random order over the other tasks j, whenever the (already projected) g_i^PC
conflicts with the original g_j (g_i^PC . g_j < 0) it is projected onto g_j's normal plane,

    g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2 * g_j,

and the update is the sum d = sum_i g_i^PC. As in Gama & Grassi's ``optimizers/pcgrad.py`` (and the
authors' code), each task draws its own random order (here from the method's ``torch.Generator``).

Each g_i^PC stays in the span of the original gradients, so the projections run on the T x T Gram
matrix (coefficients a_ik with g_i^PC = sum_k a_ik g_k): O(T^2 D) for the Gram matrix plus one
O(T D) combination, never T^2 D-sized vector updates. The weights reported are None (mtlbench's
convention for PCGrad), although d = sum_k (sum_i a_ik) g_k. Heads get their plain own-task gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.solvers import combine_rows, gram, randperm


def pcgrad_coefficients(gram_matrix: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The (T, T) matrix A with g_i^PC = sum_k A_ik g_k, from the Gram matrix and random task orders."""
    G = gram_matrix.detach().to("cpu", torch.float64).numpy()
    n = G.shape[0]
    A = np.eye(n)
    for i in range(n):
        for j in randperm(n, generator):
            if j == i:
                continue
            dot = float(A[i] @ G[:, j])  # g_i^PC . g_j
            if dot < 0.0:
                A[i, j] -= dot / G[j, j]
    return torch.from_numpy(A)


@register_method
class PCGrad(GradientMethod):
    """Sum of gradients projected off each other's normal planes when conflicting (Yu et al. 2020)."""

    name = "pcgrad"
    title = "PCGrad"
    citation = "Yu, Kumar, Gupta, Levine, Hausman & Finn, Gradient Surgery for Multi-Task Learning, NeurIPS 2020"
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    stateless = True
    randomized = True

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        A = pcgrad_coefficients(gram(gradients), generator)
        return Aggregation(combine_rows(A.sum(dim=0), gradients), None, state)
