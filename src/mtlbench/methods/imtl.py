"""IMTL: the hybrid of IMTL-L (loss scales) and IMTL-G (gradient combination).

Liu et al. (2021), *Towards Impartial Multi-task Learning*, ICLR, section 3.3 (Algorithm 1): the
losses are scaled as in IMTL-L (:mod:`mtlbench.methods.imtl_l`), e^{s_i} L_i - s_i, and IMTL-G
(:mod:`mtlbench.methods.imtl_g`, eq. 10) combines the gradients of the *scaled* losses,
e^{s_i} g_i. This is Gama & Grassi's ``IMTL(ub=True, learn_scaling=True)``, the IMTL of 000 and 003:
IMTL-G on the gradients w.r.t. the shared representation (default space), the scales in their own
Adam at the main learning rate (``lr`` overrides it), stepped inside :meth:`backward`.

:meth:`combine` is pure: its ``state`` is the vector of log-scales s (zeros when None, which is
plain IMTL-G); it returns alpha from the Gram matrix of e^{s_i} g_i and the effective coefficients
of the raw gradients as weights, c_i = alpha_i e^{s_i}, with d = sum_i c_i g_i. Heads get the
IMTL-L-weighted gradient e^{s_i} g_head (the reference's ``standard_head_backward`` on the scaled
losses), not c_i g_head. Fallbacks are IMTL-G's (``solver_fallback``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import (
    Aggregation,
    GradientMethod,
    HeadGradient,
    StepResult,
    TrainingContext,
    _head_gradients_by_full_backward,
)
from mtlbench.methods.gradients import accumulate_grad, per_task_gradients, unflatten
from mtlbench.methods.imtl_g import IMTL_G_HYPERPARAMETERS, imtl_g_weights
from mtlbench.methods.imtl_l import LR_HYPERPARAMETER, LearnedLossScales
from mtlbench.methods.solvers import combine_rows, gram


@register_method
class IMTL(LearnedLossScales, GradientMethod):
    """IMTL-G on the gradients of the IMTL-L scaled losses (Liu et al. 2021, Algorithm 1)."""

    name = "imtl"
    title = "IMTL"
    citation = "Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, Towards Impartial Multi-task Learning, ICLR 2021"
    default_space = "representation"
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (*IMTL_G_HYPERPARAMETERS, LR_HYPERPARAMETER)
    stateless = False
    randomized = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self._init_scales(n_tasks)

    def attach(self, context: TrainingContext) -> None:
        self._attach_scales(context)

    def combine(self, gradients: Tensor, *, losses=None, features=None, state: Any = None, generator=None):
        n_tasks = gradients.shape[0]
        log_scales = torch.zeros(n_tasks, dtype=torch.float64) if state is None else state
        scales = torch.as_tensor(log_scales).detach().to("cpu", torch.float64).exp()
        G = gram(gradients).cpu() * torch.outer(scales, scales)  # Gram matrix of e^{s_i} g_i
        alpha, fallback = imtl_g_weights(G, self.hparams["eps"], transposed=self.hparams["system"] == "transposed")
        coefficients = alpha * scales
        info = {"count_solver_fallback": 1} if fallback else {}
        weights = coefficients.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(combine_rows(coefficients, gradients), weights, state, info)

    def backward(self, losses, shared_parameters, *, features=None, task_parameters=None) -> StepResult:
        shared = [p for p in shared_parameters if p.requires_grad]
        on_representation = self.hparams["space"] == "representation"
        if on_representation and features is None:
            raise UserInputError(f"{self.name}: space=representation needs the shared features (features=...)")
        heads = [list(ps) for ps in task_parameters] if task_parameters is not None else None
        inputs = [features] if on_representation else shared
        gradients, head_gradients = per_task_gradients(
            losses, inputs, heads, retain_graph=on_representation or heads is None
        )
        log_scales = self.log_scales.value.detach().clone()
        result = self.combine(
            gradients, losses=losses.detach(), features=features, state=log_scales, generator=self.generator
        )
        self.state = log_scales
        for key, value in result.info.items():
            if key.startswith("count_"):
                self.counters[key.removeprefix("count_")] += int(value)
        if on_representation:
            features.backward(result.direction.view_as(features).to(features.dtype), retain_graph=heads is None)
        else:
            accumulate_grad(shared, unflatten(result.direction, shared))
        scales = log_scales.exp().to(losses)
        if heads is None:
            _head_gradients_by_full_backward(losses, scales, shared, retain_graph=False)
        else:
            for i, (params, grads) in enumerate(zip(heads, head_gradients, strict=True)):
                accumulate_grad(params, [None if g is None else g * scales[i] for g in grads])
        # d/ds_i (e^{s_i} L_i - s_i) = e^{s_i} L_i - 1, then the scales' own Adam step
        self.log_scales.value.grad = (scales * losses.detach() - 1.0).to(self.log_scales.value)
        self._step_scales()
        return StepResult(result.weights.detach(), dict(result.info))
