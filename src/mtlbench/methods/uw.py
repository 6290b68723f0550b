"""UW: uncertainty weighting with learned homoscedastic noise per task.

Kendall, Gal & Cipolla (2018), *Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics*, CVPR. With eta_i = log sigma_i learned jointly with the network (by the
*main* optimizer: :meth:`UncertaintyWeighting.parameters`), each task adds the negative log
likelihood of its noise model, chosen by the task's loss type:

- Gaussian (MSE, their regression likelihood): L_i/(2 sigma_i^2) + log sigma_i; optimum sigma_i^2 = L_i
- Boltzmann (cross-entropy, their scaled softmax): L_i/sigma_i^2 + log sigma_i; optimum sigma_i^2 = 2 L_i
- Laplace (L1, the same construction; 001 eq. 1): L_i/sigma_i + log sigma_i; optimum sigma_i = L_i

The reported weights are the effective coefficients c_i = dObjective/dL_i (1/(2 sigma^2),
1/sigma^2, 1/sigma): they do *not* sum to T (mtlbench's convention for UW; not renormalised).

Reference code: Gama & Grassi's ``optimizers/uw.py`` uses these three forms per task (Gaussian for
reconstruction and QM9, Boltzmann for classification and segmentation, Laplace for the L1 tasks)
with eta = log sigma initialised at 0, which mtlbench follows (``form=kendall``, the default).
``form=libmtl`` is LibMTL's ``weighting/UW.py`` (which 001 ran; also MTAN's ``--weight uncert``): one
Gaussian form for every task, parametrised by s = log sigma^2 initialised at -0.5,
sum_i L_i / (2 exp(s_i)) + s_i / 2 (weights 1/(2 exp(s_i)); optimum s_i = log L_i). It equals the
Gaussian form at s = 2 eta, but Adam steps on s, not eta, so the dynamics differ.

Loss types come from the trainer (``attach(context)``, ``context.loss_types``) unless the
``loss_types`` hyperparameter is given explicitly; with neither, every task is Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods._loss_based import TaskVector
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind, TrainingContext
from mtlbench.methods.hyperparameters import Hyperparameter

#: likelihood form per loss type: (power p, divisor f) in eta + L * exp(-p * eta) / f
FORMS: dict[str, tuple[float, float]] = {"gaussian": (2.0, 2.0), "boltzmann": (2.0, 1.0), "laplace": (1.0, 1.0)}
LOSS_TYPE_FORM = {
    "mse": "gaussian",
    "gaussian": "gaussian",
    "cross_entropy": "boltzmann",
    "nll": "boltzmann",
    "boltzmann": "boltzmann",
    "l1": "laplace",
    "laplace": "laplace",
}


def forms_for(loss_types: Sequence[str], n_tasks: int, method: str = "uw") -> list[str]:
    """The likelihood form of each task from its loss type (one-line error for unknown types)."""
    if len(loss_types) != n_tasks:
        raise UserInputError(
            f"{method}: loss_types={','.join(loss_types)!r} has {len(loss_types)} entries; "
            f"{n_tasks} tasks need {n_tasks}"
        )
    forms = []
    for loss_type in loss_types:
        key = loss_type.strip().lower()
        if key not in LOSS_TYPE_FORM:
            raise UserInputError(
                f"{method}: loss type {loss_type!r} is unknown; allowed: {', '.join(sorted(LOSS_TYPE_FORM))}"
            )
        forms.append(LOSS_TYPE_FORM[key])
    return forms


@register_method
class UncertaintyWeighting(LossWeightingMethod):
    """sum_i eta_i + L_i exp(-p_i eta_i) / f_i with eta_i = log sigma_i (Kendall et al. 2018)."""

    name = "uw"
    title = "UW"
    citation = (
        "Kendall, Gal & Cipolla, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry "
        "and Semantics, CVPR 2018"
    )
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter(
            "loss_types",
            None,
            "comma-separated loss type per task (mse, cross_entropy, nll, l1); default: the trainer's, else mse",
            kind="str",
        ),
        Hyperparameter(
            "init",
            None,
            "initial parameter of every task: log sigma (default 0), or s for libmtl (-0.5)",
            low=-10.0,
            high=10.0,
        ),
        Hyperparameter(
            "form",
            "kendall",
            "kendall: the likelihood of each task's loss type, eta = log sigma; libmtl: L/(2 e^s) + s/2 for every task",
            kind="str",
            choices=("kendall", "libmtl"),
        ),
    )
    stateless = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.libmtl = self.hparams["form"] == "libmtl"
        init = self.hparams["init"]
        self.log_sigma = TaskVector(n_tasks, (-0.5 if self.libmtl else 0.0) if init is None else init)
        given = self.hparams["loss_types"]
        if self.libmtl and given is not None:
            raise UserInputError(f"{self.name}: form=libmtl uses one form for every task; drop loss_types={given!r}")
        self._explicit = given is not None or self.libmtl
        types = given.split(",") if given is not None else ["mse"] * n_tasks
        self.forms = forms_for(types, n_tasks, self.name)

    def attach(self, context: TrainingContext) -> None:
        if not self._explicit and context.loss_types:
            self.forms = forms_for(list(context.loss_types), self.n_tasks, self.name)

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_sigma.value]

    def _powers(self, like: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.tensor([FORMS[f][0] for f in self.forms], dtype=like.dtype, device=like.device)
        f = torch.tensor([FORMS[f][1] for f in self.forms], dtype=like.dtype, device=like.device)
        return p, f

    def coefficients(self) -> Tensor:
        """The effective coefficients c_i = exp(-p_i eta_i) / f_i (libmtl: exp(-s_i) / 2; detached)."""
        eta = self.log_sigma.value.detach()
        if self.libmtl:
            return torch.exp(-eta) / 2.0
        p, f = self._powers(eta)
        return torch.exp(-p * eta) / f

    def optimal_log_sigma(self, losses: Tensor) -> Tensor:
        """The analytic minimiser of each task's term for fixed losses: eta* = log(L_i * p_i / f_i) / p_i
        (libmtl: s* = log L_i)."""
        if self.libmtl:
            return torch.log(losses)
        p, f = self._powers(losses)
        return torch.log(losses * p / f) / p

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        eta = self.log_sigma.value.to(losses.device)
        if self.libmtl:  # LibMTL's UW: L / (2 e^s) + s / 2
            coefficients = torch.exp(-eta) / 2.0
            return (coefficients * losses + eta / 2.0).sum(), coefficients.detach()
        p, f = self._powers(losses)
        coefficients = torch.exp(-p * eta) / f
        total = (coefficients * losses + eta).sum()
        return total, coefficients.detach()
