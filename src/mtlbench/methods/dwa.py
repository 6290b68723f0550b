"""DWA: Dynamic Weight Average, weights from the rate of change of each task's epoch loss.

Liu, Johns & Davison (2019), *End-to-End Multi-Task Learning with Attention*, CVPR (MTAN), the
Dynamic Weight Average:

    w_i(t) = T exp(r_i(t-1) / tau) / sum_j exp(r_j(t-1) / tau),   r_i(t-1) = L_i(t-1) / L_i(t-2),

where L_i(t) is task i's mean training loss over epoch t and tau the temperature (2 in the paper).
The weights are constant within an epoch and equal to 1 during the first two epochs. They sum to
T, as in the paper, LibMTL's ``DWA`` and MTAN's code (mtlbench's convention too).

The trainer reports each epoch's mean losses through :meth:`DynamicWeightAverage.end_epoch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind
from mtlbench.methods.hyperparameters import Hyperparameter


@register_method
class DynamicWeightAverage(LossWeightingMethod):
    """T * softmax(r / tau), r_i = L_i(t-1) / L_i(t-2) from epoch mean losses (Liu et al. 2019)."""

    name = "dwa"
    title = "DWA"
    citation = "Liu, Johns & Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (Hyperparameter("temperature", 2.0, "softmax temperature tau", low=0.0, low_inclusive=False),)
    stateless = False

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.history: list[Tensor] = []  # the last two epochs' mean losses, oldest first
        self.weights = torch.ones(n_tasks)
        self._on_device: Tensor | None = None  # the weights moved to the losses' device, cached per epoch

    def end_epoch(self, mean_losses: Tensor) -> None:
        losses = torch.as_tensor(mean_losses, dtype=torch.float64).detach().cpu().reshape(-1)
        if losses.numel() != self.n_tasks:
            raise UserInputError(
                f"dwa: end_epoch got {losses.numel()} mean losses; {self.n_tasks} tasks need {self.n_tasks}"
            )
        self.history = [*self.history, losses][-2:]
        if len(self.history) == 2:
            ratio = self.history[1] / self.history[0]
            weights = self.n_tasks * torch.softmax(ratio / self.hparams["temperature"], dim=0)
            self.weights = weights.to(torch.float32)
            self._on_device = None

    def loss_weights(self, losses: Tensor) -> Tensor:
        cached = self._on_device
        if cached is None or cached.device != losses.device or cached.dtype != losses.dtype:
            cached = self._on_device = self.weights.to(losses)
        return cached

    def extra_state(self) -> dict[str, Any]:
        return {"history": [h.clone() for h in self.history], "weights": self.weights.clone()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.history = [torch.as_tensor(h, dtype=torch.float64) for h in state.get("history", [])]
        self.weights = torch.as_tensor(state.get("weights", torch.ones(self.n_tasks)), dtype=torch.float32)
        self._on_device = None
