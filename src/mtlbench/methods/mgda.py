"""MGDA: the multiple-gradient descent algorithm on the shared parameters.

Sener & Koltun (2018), *Multi-Task Learning as Multi-Objective Optimization*, NeurIPS. The common
direction is the minimum-norm point of the convex hull of the task gradients (eq. 3):

    alpha* = argmin_{alpha in simplex} || sum_i alpha_i g~_i ||^2,     g~_i = g_i / n_i,

solved on the T x T Gram matrix (:func:`~mtlbench.methods.solvers.min_norm_weights`: their closed
form for T = 2, Algorithm 1, and an exact min-norm-point solver for T > 2 where their code runs at
most 250 projected-gradient steps with tolerance 1e-5 and clamps the T = 2 solution to [0.001, 0.999]).

Normalisation n_i (section 3.3 / their code's ``normalization_type``; not part of the theory):
``l2`` ||g_i||, ``loss`` L_i, ``loss+`` L_i ||g_i|| (the default, as their ``sample.json`` and
Gama & Grassi's runs), ``none`` 1. A zero normaliser leaves that gradient unscaled (as the
reference code). ``loss`` and ``loss+`` need non-negative losses.

Direction: Gama & Grassi's ``optimizers/mgda.py`` (from Kurin et al.; LibMTL's MGDA on parameters
does the same) applies alpha to the *normalised* gradients, d = sum_i alpha_i g~_i, so the effective
coefficients reported as weights are c_i = alpha_i / n_i (no global rescale; they need not sum to
T). ``direction=raw`` gives Sener & Koltun's own code instead (backpropagate sum_i alpha_i L_i:
d = sum_i alpha_i g_i, c_i = alpha_i, summing to 1). Heads get their plain own-task gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import combine_rows, gram, min_norm_weights

NORMALIZATIONS = ("loss+", "l2", "loss", "none")


def gradient_normalizers(kind: str, norms: Tensor, losses: Tensor | None, method: str) -> Tensor:
    """The normaliser n_i of each task (float64), with 1 where it would be 0 (reference behaviour)."""
    if kind == "none":
        values = torch.ones_like(norms)
    elif kind == "l2":
        values = norms.clone()
    else:
        if losses is None:
            raise UserInputError(f"{method}: normalize={kind} needs the task losses (losses=...); or use normalize=l2")
        loss_values = losses.detach().to("cpu", torch.float64).reshape(-1)
        if bool((loss_values < 0).any()):
            raise UserInputError(
                f"{method}: normalize={kind} needs non-negative losses, got {loss_values.tolist()}; use normalize=l2"
            )
        values = loss_values if kind == "loss" else loss_values * norms
    return torch.where(values == 0, torch.ones_like(values), values)


def mgda_coefficients(gram_matrix: Tensor, normalizers: Tensor, *, normalized_direction: bool) -> tuple[Tensor, Tensor]:
    """(c, alpha): alpha the min-norm weights of the normalised gradients, c the coefficients of g_i."""
    normalized_gram = gram_matrix / torch.outer(normalizers, normalizers)
    alpha = min_norm_weights(normalized_gram)
    coefficients = alpha / normalizers if normalized_direction else alpha
    return coefficients, alpha


def mgda_hyperparameters(direction: str) -> tuple[Hyperparameter, ...]:
    return (
        Hyperparameter(
            "normalize",
            "loss+",
            "gradient normalisation before the min-norm problem: loss+ (L_i ||g_i||), l2, loss, none",
            kind="str",
            choices=NORMALIZATIONS,
        ),
        Hyperparameter(
            "direction",
            direction,
            "combine the normalised gradients (Gama/Kurin/LibMTL code) or the raw ones (Sener & Koltun's code)",
            kind="str",
            choices=("normalized", "raw"),
        ),
    )


@register_method
class MGDA(GradientMethod):
    """Min-norm point of the convex hull of normalised task gradients (Sener & Koltun 2018, eq. 3)."""

    name = "mgda"
    title = "MGDA"
    citation = "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, NeurIPS 2018"
    default_space = "parameters"
    head_gradient = HeadGradient.OWN
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = mgda_hyperparameters("normalized")
    stateless = True
    randomized = False

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        G = gram(gradients).cpu()
        norms = G.diagonal().clamp_min(0.0).sqrt()
        normalizers = gradient_normalizers(self.hparams["normalize"], norms, losses, self.name)
        coefficients, _ = mgda_coefficients(
            G, normalizers, normalized_direction=self.hparams["direction"] == "normalized"
        )
        weights = coefficients.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(combine_rows(coefficients, gradients), weights, state)
