"""CDTT: the central (EDM) direction plus task tensioners.

Nakamura, Ishikawa, Hanai & Uchida (2022), *Leveraging convergence behavior to balance conflicting
tasks in multi-task learning*, Neurocomputing (arXiv:2204.06698); reference code
tiemink/MTL_TaskTensioner (``GradHistory``) and Gama & Grassi's ``optimizers/task_tensioners.py``.
In the notation of 000's Proposition 5, with d* the EDM direction (:mod:`mtlbench.methods.edm`):

- a sliding window of the last W = 10 gradient norms per task; zeta_i(t) = their sum (the code's
  "mean": the ratio below is the same);
- delta_i = zeta_i(t) / zeta_i(t-1) + log10(L_i) (relative change of the gradient norm plus the
  loss level);
- tension c_i = max(0, alpha / (1 + exp(-delta_i e + e)) + 1 - alpha), alpha in [0, 1];
- v = d* + sum_i c_i (g_i - d*) / ||g_i - d*||;
- if some g_i makes an obtuse angle with v, v is replaced by the vector of length
  tan(pi - angle(g_i, v - g_i)) ||g_i|| along v's component orthogonal to g_i (the code's
  "check direction", applied task after task).

Tensions start once the window is full and a previous window sum exists (from the 11th step on, as
the code); before that the direction is EDM's. Everything runs on the T x T Gram matrix: v stays
in the span of the g_i, and the weights are the effective coefficients c with d = sum_i c_i g_i
(Gama & Grassi's ``cdtt_weights``). A zero task gradient gives a zero shared direction and leaves
the history unchanged (reference code); a tensioner with g_i = d* (no defined unit vector) or a
degenerate angle correction is skipped; both count in ``solver_fallback``.

The state (window of norms, step count, previous window sum) goes in and out of :meth:`combine`.
Heads get their plain own-task gradient.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.edm import edm_coefficients
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import combine_rows, gram

ALPHA_GRID = (0.2, 0.4, 0.6, 0.8, 1.0)
_TINY = 1e-20


def tension_factors(window_sums: np.ndarray, previous: np.ndarray, losses: np.ndarray, alpha: float) -> np.ndarray:
    """c_i = max(0, alpha / (1 + exp(-delta_i e + e)) + 1 - alpha), delta_i = zeta_i/zeta_i' + log10 L_i."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = window_sums / previous + np.log10(losses)
        tension = alpha / (1.0 + np.exp(-delta * math.e + math.e)) + 1.0 - alpha
    return np.where(tension > 0, tension, 0.0)  # NaN -> 0, as Python's max(0, nan)


def tensioned_coefficients(G: np.ndarray, c: np.ndarray, tension: np.ndarray) -> tuple[np.ndarray, int]:
    """Coefficients of v (tension vector, then the obtuse-angle correction) from EDM's c; and #fallbacks."""
    fallbacks = 0
    Gc = G @ c
    b2 = np.diag(G) - 2.0 * Gc + c @ Gc  # ||g_i - d*||^2
    scale = max(float(np.max(np.diag(G))), _TINY)
    defined = b2 > 1e-24 * scale
    fallbacks += int((~defined & (tension > 0)).sum())
    ratio = np.where(defined, tension / np.sqrt(np.where(defined, b2, 1.0)), 0.0)
    coef = c + ratio - c * ratio.sum()
    for i in range(G.shape[0]):
        v_gi = float(G[i] @ coef)
        if not v_gi < 0.0:  # angle(g_i, v) <= 90 degrees
            continue
        g_ii = float(G[i, i])
        norm_i = math.sqrt(g_ii)
        vv = float(coef @ G @ coef)
        uv = v_gi / norm_i
        w2 = vv - uv * uv
        diff2 = vv - 2.0 * v_gi + g_ii  # ||v - g_i||^2
        if w2 <= 1e-24 * max(vv, _TINY) or diff2 <= 0.0:
            fallbacks += 1
            continue
        cos_theta = min(1.0, max(-1.0, (v_gi - g_ii) / (norm_i * math.sqrt(diff2))))
        tan_a = math.tan(math.pi - math.acos(cos_theta))
        w_norm = math.sqrt(w2)
        coef = coef * (norm_i * tan_a / w_norm)
        coef[i] -= uv * tan_a / w_norm
    return coef, fallbacks


@register_method
class CDTT(GradientMethod):
    """EDM's central direction pulled by per-task tensions from loss and gradient-norm trends (Nakamura 2022)."""

    name = "cdtt"
    title = "CDTT"
    citation = (
        "Nakamura, Ishikawa, Hanai & Uchida, Leveraging convergence behavior to balance conflicting tasks "
        "in multi-task learning, Neurocomputing 2022"
    )
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter("alpha", 0.2, "sensitivity of the tension factors", low=0.0, high=1.0),
        Hyperparameter("window", 10, "number of past gradient norms summed per task", kind="int", low=1),
    )
    grids: ClassVar[dict[str, dict[str, tuple[float, ...]]]] = {
        problem: {"alpha": ALPHA_GRID} for problem in ("multi_mnist", "cityscapes", "qm9")
    }
    stateless = False
    randomized = False

    def initial_state(self) -> dict[str, Any]:
        return {
            "iterations": 0,
            "history": torch.zeros(self.n_tasks, self.hparams["window"], dtype=torch.float64),
            "previous": None,
        }

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        if losses is None:
            raise UserInputError(f"{self.name}: needs the task losses (losses=...)")
        state = self.initial_state() if state is None else state
        G = gram(gradients).cpu()
        solved = edm_coefficients(G)
        if solved is None:  # a zero gradient: no shared update, history untouched (reference code)
            zeros = torch.zeros(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)
            return Aggregation(torch.zeros_like(gradients[0]), zeros, state, {"count_solver_fallback": 1})
        c = solved[0].numpy()
        window = state["history"].shape[1]
        history = state["history"].clone()
        history[:, state["iterations"] % window] = G.diagonal().sqrt()
        iterations = state["iterations"] + 1
        previous = state["previous"]
        fallbacks = 0
        if iterations >= window:
            sums = history.sum(dim=1)
            if previous is not None:
                loss_values = losses.detach().to("cpu", torch.float64).reshape(-1).numpy()
                tension = tension_factors(sums.numpy(), previous.numpy(), loss_values, self.hparams["alpha"])
                c, fallbacks = tensioned_coefficients(G.numpy(), c, tension)
            previous = sums
        coefficients = torch.from_numpy(np.ascontiguousarray(c))
        new_state = {"iterations": iterations, "history": history, "previous": previous}
        info = {"count_solver_fallback": fallbacks} if fallbacks else {}
        weights = coefficients.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(combine_rows(coefficients, gradients), weights, new_state, info)
