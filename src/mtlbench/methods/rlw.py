"""RLW: random loss weighting, new random weights every step.

Lin, Ye, Zhang & Tsang (2022), *Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning*, TMLR: at every step sample lambda ~ p(lambda) and minimise sum_i lambda_i L_i,
with the two distributions 000 evaluates:

- ``rlw_normal``: lambda = softmax(x), x ~ N(0, I_T);
- ``rlw_dirichlet``: lambda ~ Dirichlet(concentration * 1_T), concentration 1 by default.

Following mtlbench's convention (and Gama & Grassi's ``optimizers/rlw.py``) the sample is rescaled
to sum T: w = T * lambda / sum(lambda). ``weights_sum=one`` keeps lambda / sum(lambda) (sum 1), as
LibMTL's ``weighting/RLW.py`` (softmax of its draw), which 001 ran: ``rlw_normal weights_sum=one`` is
LibMTL's default RLW exactly. LibMTL's ``RLW`` applies the softmax to the Dirichlet sample too; Gama's
code and the RLW paper use the Dirichlet sample itself, as here.

Randomness comes from the method's ``generator`` (deterministic given its seed); without one the
global torch generator is used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind
from mtlbench.methods.hyperparameters import Hyperparameter

CITATION = (
    "Lin, Ye, Zhang & Tsang, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task "
    "Learning, TMLR 2022"
)


WEIGHTS_SUM = Hyperparameter(
    "weights_sum",
    "tasks",
    "what the weights sum to: tasks = T (mtlbench, Gama's code) or one = 1 (LibMTL, 001)",
    kind="str",
    choices=("tasks", "one"),
)


class RandomLossWeighting(LossWeightingMethod):
    """Weights T * lambda / sum(lambda) (or lambda / sum(lambda)) with lambda drawn afresh every step."""

    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    citation = CITATION
    randomized = True
    hyperparameters = (WEIGHTS_SUM,)

    def _device(self) -> torch.device:
        return self.generator.device if self.generator is not None else torch.device("cpu")

    def sample(self) -> Tensor:
        """One draw of lambda (T,), on the generator's device."""
        raise NotImplementedError

    def loss_weights(self, losses: Tensor) -> Tensor:
        draw = self.sample().to(losses)
        total = self.n_tasks if self.hparams["weights_sum"] == "tasks" else 1.0
        return total * draw / draw.sum()


@register_method
class RandomLossWeightingNormal(RandomLossWeighting):
    """lambda = softmax(x), x ~ N(0, I) (Lin et al. 2022), rescaled to sum T."""

    name = "rlw_normal"
    title = "RLW-Normal"

    def sample(self) -> Tensor:
        x = torch.randn(self.n_tasks, generator=self.generator, device=self._device())
        return torch.softmax(x, dim=0)


@register_method
class RandomLossWeightingDirichlet(RandomLossWeighting):
    """lambda ~ Dirichlet(concentration) (Lin et al. 2022), rescaled to sum T."""

    name = "rlw_dirichlet"
    title = "RLW-Dirichlet"
    hyperparameters = (
        Hyperparameter(
            "concentration", 1.0, "Dirichlet concentration of every task (000 uses 1)", low=0.0, low_inclusive=False
        ),
        WEIGHTS_SUM,
    )

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.concentration = torch.full((n_tasks,), self.hparams["concentration"])

    def sample(self) -> Tensor:
        # Dirichlet as normalised independent Gamma(concentration, 1) draws (the sum divides in loss_weights)
        gamma = torch._standard_gamma(self.concentration.to(self._device()), generator=self.generator)
        return gamma / gamma.sum()
