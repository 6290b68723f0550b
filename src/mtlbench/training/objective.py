"""The objective scale of a run (``RunConfig.objective``): the sum of the losses or their mean.

mtlbench's convention is the sum (Unit. Scal. = weights all ones). ``mean`` divides every gradient the
step wrote into the main optimizer -- shared parameters, heads and the method's own parameters there
(UW's log-variances) -- by T, *after* the method's combination and any clipping it does (Nash-MTL's
clip to norm 1 then bounds the sum-scale direction, so ``mean`` gives a clipped norm of 1/T: see
docs/fidelity.md). Reported weights are unchanged. ``mean_shared`` divides only the shared
parameters' gradient: 000's CAGrad averages the shared direction but gives heads their plain gradient.

Under Adam the scale only moves eps and coupled L2 weight decay: a ``mean`` run at weight decay w takes
the steps of a ``sum`` run at T*w (the gradient g/T + w p is (g + T w p)/T and Adam divides the scale
out up to eps); under SGD the scale is the learning rate's. Optimizers of a method's own (IMTL-L's
scales, FAMO's logits, RotoGrad's rotations, Auto-Lambda's lambda) are not affected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlbench.training.config import OBJECTIVES


def objective_factor(objective: str, n_tasks: int) -> float:
    """The factor applied to the gradients (1 for ``sum``, 1/T otherwise)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    return 1.0 if objective == "sum" else 1.0 / n_tasks


def scaled_parameters(
    objective: str, shared: Sequence[torch.Tensor], optimized: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """The parameters whose gradients ``objective`` rescales (``optimized``: the main optimizer's)."""
    if objective == "sum":
        return []
    if objective == "mean_shared":
        return list(shared)
    return list(optimized)


def apply_objective(parameters: Sequence[torch.Tensor], factor: float) -> None:
    """Multiply the gradients of ``parameters`` in place by ``factor`` (those without a gradient are skipped)."""
    if factor == 1.0:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, factor)


__all__ = ["apply_objective", "objective_factor", "scaled_parameters"]
