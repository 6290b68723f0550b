"""Fixed weights: a constant weighted sum of the losses.

Gama & Grassi (000), section 3.5: constant task weights, e.g. extracted from an SMTO's weight
trajectory (per-epoch means, EMA with beta 0.9, last value). Following mtlbench's convention the
given weights are renormalised to sum to T: w_i = T * v_i / sum_j v_j. ``normalize=false`` uses them as
given (002's grid-searched weights, e.g. NYUD 1/1/2/50: renormalising would change their balance against
weight decay and the learning rate; docs/fidelity.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind
from mtlbench.methods.hyperparameters import Hyperparameter


@register_method
class FixedWeights(LossWeightingMethod):
    """sum_i w_i L_i with constant w, renormalised to sum T (000 section 3.5)."""

    name = "fixed_weights"
    title = "Fixed weights"
    citation = "Gama & Grassi, Uniform Loss vs. Specialized Optimization, 2025, section 3.5"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter(
            "weights",
            None,
            "constant task weights, comma-separated, non-negative (renormalised to sum T)",
            kind="floats",
            low=0.0,
        ),
        Hyperparameter("normalize", True, "renormalise the weights to sum T (false: use them as given)", kind="bool"),
    )

    def __init__(self, n_tasks: int, **kwargs) -> None:
        super().__init__(n_tasks, **kwargs)
        given = self.hparams["weights"]
        if given is None:
            given = (1.0,) * n_tasks
        if len(given) != n_tasks:
            raise UserInputError(
                f"fixed_weights: weights={given!r} has {len(given)} values; {n_tasks} tasks need {n_tasks}"
            )
        if sum(given) <= 0:
            raise UserInputError(f"fixed_weights: weights={given!r} must have a positive sum")
        values = torch.tensor(given, dtype=torch.float32)
        self.weights = values * n_tasks / values.sum() if self.hparams["normalize"] else values

    def loss_weights(self, losses: Tensor) -> Tensor:
        return self.weights.to(losses.device)
