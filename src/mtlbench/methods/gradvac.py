"""GradVac: gradient vaccine, adaptive target similarities between task gradients.

Wang, Tsvetkov, Firat & Cao (2021), *Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models*, ICLR. For every task ``i`` and every other task ``j``
in random order (Algorithm 1), with ``phi_ij`` the cosine between the (already modified) ``g_i'`` and
the original ``g_j`` and ``phi_hat_ij`` an exponential moving average of past cosines (eq. 3,
``phi_hat <- (1 - beta) phi_hat + beta phi``, starting at 0): if ``phi_ij < phi_hat_ij``,

    g_i' <- g_i' + ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                   / (||g_j|| sqrt(1 - phi_hat^2)) g_j                                  (eq. 2)

which makes ``cos(g_i', g_j) = phi_hat_ij`` exactly. The update is ``d = sum_i g_i'``. Every step
only adds multiples of the original gradients, so ``g_i' = sum_k C_ik g_k`` and everything is
computed on the T x T Gram matrix (as TorchJD's ``GradVacWeighting``); the weights are the effective
coefficients ``c_k = sum_i C_ik`` (all ones when nothing is adjusted: the sum, mtlbench's scale).

Defaults follow the reference implementations (LibMTL ``GradVac``, TorchJD, SamsungLabs/MTL):
``beta = 0.5`` (the paper's NMT experiments use 1e-2), one parameter group (the whole shared
model; the paper's per-layer groups are not implemented), epsilon 1e-8 in the denominators (here on
the Gram matrix scaled to unit mean diagonal, so it is relative). The EMA is updated for every pair
as Algorithm 1, TorchJD and LibMTL do (``ema_update="always"``; LibMTL since its commit d2d84fa,
2024-02, "fix a bug in GradVac"); SamsungLabs/MTL and LibMTL before that update it only when the
pair was adjusted (``ema_update="adjusted"``). The visiting order comes from ``generator``.
Heads get their own plain gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram

EPS = 1e-8


def vaccine_coefficients(
    K: Tensor,
    targets: Tensor,
    beta: float,
    orders: list[list[int]],
    *,
    ema_always: bool = True,
    eps: float = EPS,
) -> tuple[Tensor, Tensor]:
    """GradVac on a Gram matrix ``K`` (float64): the coefficients ``C`` (``g_i' = sum_k C_ik g_k``) and
    the updated targets. ``orders[i]`` is the order in which task ``i`` visits the other tasks.
    """
    n = K.shape[0]
    C = torch.eye(n, dtype=torch.float64)
    targets = targets.clone().to(torch.float64)
    for i in range(n):
        products = C[i] @ K  # g_i' . g_k for every k
        for j in orders[i]:
            norm_i = math.sqrt(max(float(products @ C[i]), 0.0))
            norm_j = math.sqrt(max(float(K[j, j]), 0.0))
            phi = float(products[j]) / (norm_i * norm_j + eps)
            target = float(targets[i, j])
            adjusted = phi < target
            if adjusted:
                root_phi = math.sqrt(max(1.0 - phi * phi, 0.0))
                root_target = math.sqrt(max(1.0 - target * target, 0.0))
                w = norm_i * (target * root_phi - phi * root_target) / (norm_j * root_target + eps)
                C[i, j] += w
                products = products + w * K[j]
            if adjusted or ema_always:
                targets[i, j] = (1.0 - beta) * target + beta * phi
    return C, targets


@register_method
class GradVac(GradientMethod):
    """Gradient vaccine: raise pairwise cosines to their EMA targets (Wang et al. 2021, eqs. 2-3)."""

    name = "gradvac"
    title = "GradVac"
    citation = (
        "Wang, Tsvetkov, Firat & Cao, Gradient Vaccine: Investigating and Improving Multi-task Optimization "
        "in Massively Multilingual Models, ICLR 2021"
    )
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter(
            "beta", 0.5, "EMA rate of the target cosines (LibMTL/TorchJD default; paper 1e-2)", low=0.0, high=1.0
        ),
        Hyperparameter(
            "ema_update",
            "always",
            "update a pair's target every step (Algorithm 1, TorchJD, LibMTL) or only when adjusted (SamsungLabs/MTL)",
            kind="str",
            choices=("always", "adjusted"),
        ),
    )
    stateless = False
    randomized = True
    min_tasks = 1

    def initial_state(self) -> Tensor:
        """Targets ``phi_hat`` start at 0 (Algorithm 1)."""
        return torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.float64)

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
        targets = self.initial_state() if state is None else state.detach().to("cpu", torch.float64)
        K = gram(gradients).cpu()
        scale = float(K.diagonal().mean())
        if scale > 0:
            K = K / scale
        device = generator.device if generator is not None else torch.device("cpu")
        orders = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            permutation = torch.randperm(len(others), generator=generator, device=device).tolist()
            orders.append([others[k] for k in permutation])
        C, targets = vaccine_coefficients(
            K, targets, float(self.hparams["beta"]), orders, ema_always=self.hparams["ema_update"] == "always"
        )
        weights = C.sum(dim=0).to(device=gradients.device, dtype=gradients.dtype)
        info = {"adjustments": float((C - torch.eye(n, dtype=C.dtype)).ne(0).sum())}
        return Aggregation(weights @ gradients, weights, targets, info)
