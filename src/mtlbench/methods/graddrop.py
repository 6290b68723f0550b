"""GradDrop: gradient sign dropout at the shared representation.

Chen et al. (2020), *Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout*,
NeurIPS. At each coordinate of the shared representation, with G_i the task gradients multiplied by
the sign of the input activation and summed over the batch (section 3.2):

- sign purity (eq. 1): P = 1/2 (1 + sum_i G_i / sum_i |G_i|), computed as
  ``0.5 + k * sum G / (2 sum |G| + 1e-7)`` with the steepness k (their lingvo code; k = 1 default);
- one U ~ U[0, 1) per coordinate; keep the positive gradients where P >= U, else the negative ones
  (Algorithm 1): M_i = [G_i >= 0] or [G_i <= 0] (a zero G_i is always kept);
- with leak l in [0, 1] (section 3.3): d = sum_i (l + (1 - l) M_i) g_i, the mask broadcast over the
  batch; l = 0 is "pure GradDrop", Gama & Grassi's setting.

As in Gama & Grassi's ``optimizers/graddrop.py`` (from Kurin et al.'s code), the result is rescaled
to the norm of the plain sum, d * ||sum_i g_i|| / (||d|| + 1e-7) (``renormalize``), activations with
|z| <= 1e-7 count as sign 0, and ``use_sign=false`` is their "random GradDrop" (each gradient entry
kept with probability 1 - p, independently of signs). In the parameter space (or without
``features``) the purity is computed per coordinate of the gradients, without input signs.

Randomness comes from the ``generator`` passed to :meth:`combine` (the method's generator in
training). There are no per-task coefficients: weights None. Heads get their own-task gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import uniform

EPSILON = 1e-7


def sign_purity(signed: Tensor, k: float = 1.0) -> Tensor:
    """P = 0.5 + k * sum_i G_i / (2 sum_i |G_i| + eps) over the task dimension 0 (Chen et al., eq. 1)."""
    return 0.5 + k * signed.sum(dim=0) / (2.0 * signed.abs().sum(dim=0) + EPSILON)


def sign_masks(signed: Tensor, purity: Tensor, draws: Tensor) -> Tensor:
    """Masks (T, ...): keep positive G_i where P >= U, negative where P < U; zeros always kept."""
    keep_positive = purity >= draws
    return torch.where(keep_positive, signed >= 0, signed <= 0)


@register_method
class GradDrop(GradientMethod):
    """Randomly keep one gradient sign per coordinate, with probability its sign purity (Chen et al. 2020)."""

    name = "graddrop"
    title = "GradDrop"
    citation = (
        "Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, Just Pick a Sign: Optimizing Deep "
        "Multitask Models with Gradient Sign Dropout, NeurIPS 2020"
    )
    default_space = "representation"
    head_gradient = HeadGradient.OWN
    hyperparameters = (
        Hyperparameter("k", 1.0, "steepness of the keep probability 0.5 + k (P - 0.5)", low=0.0, low_inclusive=False),
        Hyperparameter("leak", 0.0, "fraction of every gradient always kept (0 = pure GradDrop)", low=0.0, high=1.0),
        Hyperparameter("use_sign", True, "sign-purity masks (true) or random GradDrop (false)", kind="bool"),
        Hyperparameter("p", 0.5, "drop probability of random GradDrop (use_sign=false)", low=0.0, high=1.0),
        Hyperparameter("renormalize", True, "rescale the result to the norm of the plain sum", kind="bool"),
    )
    stateless = True
    randomized = True

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        n_tasks, size = gradients.shape
        grads, signed = gradients, gradients
        batched = (
            self.hparams["space"] == "representation"
            and features is not None
            and features.ndim >= 2
            and features.numel() == size
        )
        if batched:
            x = features.detach().to(gradients.dtype)
            input_sign = x / ((x.abs() <= EPSILON).to(x.dtype) + x).abs()
            grads = gradients.view(n_tasks, *features.shape)
            signed = (grads * input_sign).sum(dim=1)  # (T, *feature shape), summed over the batch
        if self.hparams["use_sign"]:
            purity = sign_purity(signed, self.hparams["k"])
            masks = sign_masks(signed, purity, uniform(purity.shape, generator, purity))
            if batched:
                masks = masks.unsqueeze(1)  # broadcast over the batch dimension
        else:
            masks = uniform(grads.shape, generator, grads) < 1.0 - self.hparams["p"]
        leak = self.hparams["leak"]
        kept = leak + (1.0 - leak) * masks.to(grads.dtype)
        direction = (kept * grads).sum(dim=0).reshape(size)
        if self.hparams["renormalize"]:
            direction = direction * (gradients.sum(dim=0).norm() / (direction.norm() + EPSILON))
        return Aggregation(direction, None, state)
