"""IMTL-G: impartial gradient combination (closed form).

Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang (2021), *Towards Impartial Multi-task Learning*,
ICLR, section 3.2 / eq. (10): find d = sum_i alpha_i g_i with sum_i alpha_i = 1 whose projections
on all unit gradients u_i = g_i / ||g_i|| are equal, d . u_1 = d . u_i. With the rows
D_i = g_1 - g_i and U_i = u_1 - u_i (i = 2..T),

    alpha_{2:T} = g_1 U^T (D U^T)^{-1},    alpha_1 = 1 - sum_{i>=2} alpha_i.

As a column system this is (U D^T) alpha_{2:T} = U g_1, solved on the T x T Gram matrix
(u_a . g_b = G_ab / ||g_a||) with the ridge eps I of Gama & Grassi's ``optimizers/imtl.py``
(eps = 1e-6) against singular systems. Their code (from Kurin et al.) solves (D U^T + eps I)
alpha_{2:T} = U g_1 instead, the transposed matrix, equal to the paper's for T = 2 only; mtlbench
follows the paper (and LibMTL), whose solution has equal projections for any T
(``system=transposed`` reproduces the reference code). Gama & Grassi and 003 run IMTL on the
shared representation (``ub=True``), the default here. The weights are alpha (summing to 1,
possibly negative: no global rescale).

Fallbacks (counted in ``solver_fallback``): a numerically singular U D^T (e.g. identical or
collinear gradients) keeps the eps-ridge solution, as the reference would; a zero gradient (unit
vector undefined) gives alpha = 0 and a zero shared direction, as the reference's NaN guard.
Heads get their plain own-task gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import combine_rows, gram

#: U D^T counts as singular when its smallest singular value is below this fraction of the largest
SINGULAR_RATIO = 1e-10

IMTL_G_HYPERPARAMETERS = (
    Hyperparameter("eps", 1e-6, "ridge added to the (T-1)x(T-1) system (Gama & Grassi's numerical_eps)", low=0.0),
    Hyperparameter(
        "system",
        "paper",
        "paper: (U D^T) a = U g_1 (eq. 10); transposed: (D U^T) a = U g_1 as Gama & Grassi's code (T > 2 differs)",
        kind="str",
        choices=("paper", "transposed"),
    ),
)


def imtl_g_weights(gram_matrix: Tensor, eps: float = 1e-6, *, transposed: bool = False) -> tuple[Tensor, bool]:
    """alpha (T,) summing to 1 with equal projections of sum_i alpha_i g_i on the u_i; and a fallback flag."""
    G = gram_matrix.detach().to("cpu", torch.float64)
    n = G.shape[0]
    norms = G.diagonal().clamp_min(0.0).sqrt()
    if bool((norms == 0).any()) or not bool(torch.isfinite(G).all()):
        return torch.zeros(n, dtype=torch.float64), True
    if n == 1:
        return torch.ones(1, dtype=torch.float64), False
    P = G / norms[:, None]  # P[a, b] = u_a . g_b
    # (U D^T)[i, j] = (u_1 - u_i) . (g_1 - g_j); right-hand side (U g_1)[i] = (u_1 - u_i) . g_1
    system = P[0, 0] - P[0:1, 1:] - P[1:, 0:1] + P[1:, 1:]
    rhs = P[0, 0] - P[1:, 0]
    if transposed:
        system = system.T
    singular_values = torch.linalg.svdvals(system)
    singular = bool(singular_values[-1] <= SINGULAR_RATIO * singular_values[0]) or bool(singular_values[0] == 0)
    tail = torch.linalg.solve(system + eps * torch.eye(n - 1, dtype=torch.float64), rhs)
    if not bool(torch.isfinite(tail).all()):
        return torch.zeros(n, dtype=torch.float64), True
    alpha = torch.cat([(1.0 - tail.sum()).reshape(1), tail])
    return alpha, singular


@register_method
class IMTLG(GradientMethod):
    """Affine combination with equal projections on all unit task gradients (Liu et al. 2021, eq. 10)."""

    name = "imtl_g"
    title = "IMTL-G"
    citation = "Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, Towards Impartial Multi-task Learning, ICLR 2021"
    default_space = "representation"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = IMTL_G_HYPERPARAMETERS
    stateless = True
    randomized = False

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        alpha, fallback = imtl_g_weights(
            gram(gradients), self.hparams["eps"], transposed=self.hparams["system"] == "transposed"
        )
        info = {"count_solver_fallback": 1} if fallback else {}
        weights = alpha.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(combine_rows(alpha, gradients), weights, state, info)
