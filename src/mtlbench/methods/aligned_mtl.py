"""Aligned-MTL: independent component alignment of the task gradients.

Senushkin, Patakin, Kuznetsov & Konushin (2023), *Independent Component Alignment for Multi-Task
Learning*, CVPR. With ``G`` the (D, T) matrix of task gradients and its Gram matrix
``M = G^T G = V Lambda V^T`` (eigen-decomposition, rank R), the aligned gradients are (eqs. 6-9)

    G_hat = sigma G V Lambda^(-1/2) V^T,

whose Gram matrix is ``sigma^2 I`` on the gradients' span: condition number 1, the paper's stability
criterion. The update is their sum, ``d = G_hat 1 = sum_i alpha_i g_i`` with
``alpha = sigma V Lambda^(-1/2) V^T 1``. The scale ``sigma`` follows the reference ``ProcrustesSolver``
(``SamsungLabs/MTL``, ``scale_mode``): ``min`` (default) ``sqrt(lambda_R)``, the smallest kept
eigenvalue; ``median`` ``sqrt(median lambda)`` (torch's lower median); ``rmse`` ``sqrt(mean lambda)``.
Eigenvalues at or below ``lambda_max * T * eps`` are dropped, as there, with the reference's
``eps = torch.finfo().eps`` (the default dtype's: float32), or that of the gradients or losses where
they are coarser (half precision). It does not follow the dtype of what :meth:`combine` is handed: on
the Gramian engine path that is a float64 factor of a Gram matrix of float32 gradients, whose rounding
noise a float64 eps would keep as a direction (issue 12).

The sum (not the mean) of the aligned gradients is the reference's update, so orthogonal gradients
of equal norm give weights all ones (mtlbench's scale). Heads get their own plain gradient (the
reference's ``scale_decoder_grad=False``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram


def alignment_matrix(K: Tensor, scale_mode: str = "min", eps: float | None = None) -> tuple[Tensor, Tensor]:
    """``W = sigma V Lambda^(-1/2) V^T`` (T, T) for a Gram matrix ``K``, and the kept eigenvalues.

    The aligned gradients are ``G W`` (columns ``g_hat_j = sum_i W_ij g_i``).
    """
    eps = torch.finfo(torch.float32).eps if eps is None else eps
    K = 0.5 * (K + K.T)
    eigenvalues, vectors = torch.linalg.eigh(K)
    tolerance = eigenvalues.max() * K.shape[0] * eps
    keep = eigenvalues > tolerance
    order = torch.argsort(eigenvalues[keep], descending=True)
    eigenvalues, vectors = eigenvalues[keep][order], vectors[:, keep][:, order]
    if eigenvalues.numel() == 0:
        return torch.zeros_like(K), eigenvalues
    if scale_mode == "min":
        sigma = eigenvalues[-1].sqrt()
    elif scale_mode == "median":
        sigma = torch.median(eigenvalues).sqrt()
    else:  # rmse
        sigma = eigenvalues.mean().sqrt()
    W = (vectors * (sigma / eigenvalues.sqrt())) @ vectors.T
    return W, eigenvalues


def rank_eps(gradients: Tensor, losses: Tensor | None = None) -> float:
    """The eps of the rank tolerance: float32's (the reference's ``torch.finfo().eps``), or the coarser
    one of the gradients' or the losses' dtype (the losses carry the model's precision on the Gramian path)."""
    dtypes = [t.dtype for t in (gradients, losses) if t is not None and t.dtype.is_floating_point]
    return max([torch.finfo(torch.float32).eps, *(torch.finfo(d).eps for d in dtypes)])


@register_method
class AlignedMTL(GradientMethod):
    """Sum of the gradients aligned to a condition number of 1 (Senushkin et al. 2023, eqs. 6-9)."""

    name = "aligned_mtl"
    title = "Aligned-MTL"
    citation = (
        "Senushkin, Patakin, Kuznetsov & Konushin, Independent Component Alignment for Multi-Task Learning, CVPR 2023"
    )
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter(
            "scale_mode",
            "min",
            "scale of the aligned gradients: smallest, median or mean eigenvalue (reference: min)",
            kind="str",
            choices=("min", "median", "rmse"),
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
        K = gram(gradients)
        W, eigenvalues = alignment_matrix(K, self.hparams["scale_mode"], rank_eps(gradients, losses))
        if eigenvalues.numel() == 0:  # all gradients zero: any weights give the zero direction
            weights = torch.ones(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)
            return Aggregation(torch.zeros_like(gradients[0]), weights, state, {})
        weights = W.sum(dim=1).to(device=gradients.device, dtype=gradients.dtype)
        info = {"rank": float(eigenvalues.numel()), "condition_number": float(eigenvalues[0] / eigenvalues[-1])}
        return Aggregation(weights @ gradients, weights, state, info)
