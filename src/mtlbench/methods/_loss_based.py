"""Small helpers shared by the loss-based methods (UW, FAMO, GradNorm, AvgNorm); not a method."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from mtlbench.methods.base import TrainingContext


class TaskVector(nn.Module):
    """One learnable number per task, kept in a module so that ``Method.to`` and ``state_dict`` see it."""

    def __init__(self, n_tasks: int, value: float = 0.0) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.full((n_tasks,), float(value)))

    def forward(self) -> Tensor:
        return self.value


def measured_parameters(
    context: TrainingContext | None, shared_parameters: Iterable[Tensor], where: str
) -> list[Tensor]:
    """The parameters whose per-task gradient norms AvgNorm and GradNorm measure.

    ``where='last'``: the model's last shared layer when a context is attached, otherwise all the
    shared parameters (a bare training loop does not tell which layer is last); ``'all'``: all shared.
    """
    shared = [p for p in shared_parameters if p.requires_grad]
    if where == "last" and context is not None:
        layer = [p for p in context.model.last_shared_layer.parameters() if p.requires_grad]
        if layer:
            return layer
    return shared
