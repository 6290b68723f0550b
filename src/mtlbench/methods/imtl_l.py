"""IMTL-L: impartial loss scaling with learned scales.

Liu et al. (2021), *Towards Impartial Multi-task Learning*, ICLR, section 3.1 / eq. (2)-(3): each
task's loss becomes e^{s_i} L_i - s_i with a learned s_i. Its gradient in s_i, e^{s_i} L_i - 1,
vanishes at e^{s_i} L_i = 1: at the optimum every scaled loss equals 1 whatever the scale of L_i
(loss-scale invariance), and the model receives sum_i e^{s_i} grad L_i.

As Gama & Grassi's ``optimizers/imtl.py`` (and LibMTL), s starts at 0 and is updated by its *own*
Adam (default betas) with the main learning rate (taken from the trainer through ``attach``; the
``lr`` hyperparameter overrides it, and 1e-3 is used when neither is given), stepped inside
:meth:`backward` on the gradient e^{s} L - 1. Weights c_i = e^{s_i} (the scales used in the step,
before their update; they need not sum to T). Heads get the weighted gradient e^{s_i} g_head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods._loss_based import TaskVector
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind, StepResult, TrainingContext
from mtlbench.methods.hyperparameters import Hyperparameter

#: learning rate of the scales when neither the ``lr`` hyperparameter nor a trainer gives one
FALLBACK_LR = 1e-3

LR_HYPERPARAMETER = Hyperparameter(
    "lr",
    None,
    f"learning rate of the scales' own Adam; default: the trainer's lr, else {FALLBACK_LR:g}",
    low=0.0,
    low_inclusive=False,
)


class LearnedLossScales:
    """The IMTL-L scales s (a :class:`TaskVector` at 0) and their own Adam; mixed into IMTL methods."""

    hparams: dict[str, Any]

    def _init_scales(self, n_tasks: int) -> None:
        self.log_scales = TaskVector(n_tasks, 0.0)
        lr = self.hparams["lr"] if self.hparams["lr"] is not None else FALLBACK_LR
        self.scale_optimizer = torch.optim.Adam(self.log_scales.parameters(), lr=lr)

    def _attach_scales(self, context: TrainingContext) -> None:
        if self.hparams["lr"] is None:
            for group in self.scale_optimizer.param_groups:
                group["lr"] = float(context.lr)

    def _step_scales(self) -> None:
        self.scale_optimizer.step()
        self.scale_optimizer.zero_grad(set_to_none=True)


@register_method
class IMTLL(LearnedLossScales, LossWeightingMethod):
    """Losses e^{s_i} L_i - s_i with s learned by its own Adam (Liu et al. 2021, eq. 2-3)."""

    name = "imtl_l"
    title = "IMTL-L"
    citation = "Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, Towards Impartial Multi-task Learning, ICLR 2021"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (LR_HYPERPARAMETER,)
    stateless = False
    randomized = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self._init_scales(n_tasks)

    def attach(self, context: TrainingContext) -> None:
        self._attach_scales(context)

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_scales.value
        scales = s.exp()
        return (scales * losses - s).sum(), scales.detach()

    def backward(self, losses, shared_parameters, *, features=None, task_parameters=None) -> StepResult:
        result = super().backward(losses, shared_parameters, features=features, task_parameters=task_parameters)
        self._step_scales()  # the scales' gradient e^s L - 1 came with the backward pass above
        return result
