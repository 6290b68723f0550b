"""FAMO: Fast Adaptive Multitask Optimization.

Liu, Feng, Stone & Liu (2023), *FAMO: Fast Adaptive Multitask Optimization*, NeurIPS. Task
weights z = softmax(xi) over learned logits xi (one per task, initialised at 0):

- model step: backpropagate  sum_i c z_i log(L_i - m_i + eps)  with c = 1 / sum_j (z_j / D_j) a
  constant, D_i = L_i - m_i + eps (m = min losses, 0 by default; eps = 1e-8), so the
  direction is sum_i (c z_i / D_i) g_i, a convex combination of the task gradients;
- logit step (after the model step, on the same batch): with the log-loss decrease
  delta_i = log D_i(before) - log D_i(after), the gradient of xi is J_softmax(xi)^T delta, applied by
  its own Adam(lr 0.025, weight_decay gamma) (the gamma term is FAMO's regulariser).

The logits therefore move weight towards the tasks whose log loss decreased least. mtlbench
multiplies the model objective by T so that the effective coefficients c_i = T c z_i / D_i sum to
T (its Conventions; the reference's sum to 1 next to a mean-loss Unit. Scal.); these are the
reported weights. The logit update uses the losses after the step, so ``needs_extra_forward``:
the trainer calls ``after_step(recompute_losses)`` with a closure evaluating the same batch.

Reference code: ``Cranial-XIX/FAMO`` (``famo.py``, ``methods/weight_methods.py``), LibMTL's
``FAMO`` and Gama & Grassi's ``optimizers/famo.py``. The standalone ``famo.py`` clips the shared
gradient to norm 1 after backward; ``weight_methods.py`` and Gama's code call the clipping before
backward, where it has no effect. The default follows Gama's code (``max_norm=0``: no clipping).

000 (Appendix A.6) searched gamma in {1e-2, 1e-3, 1e-4} with the logits' lr fixed at 0.025; best
gamma: 1e-3 (Multi-MNIST CL_CR), 1e-4 (CL_RR, RL_RR) (Tables 6-8, as REFERENCE.md); the bold marks
of Tables 9-10 read 1e-2 (Cityscapes) and 1e-4 (QM9) in the text extraction. The default
gamma is 1e-3, the value of FAMO's own QM9 script and LibMTL's default. Appendix A.4, Proposition 6:
with equal losses and equal initial logits the weights stay equal for any number of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind, StepResult
from mtlbench.methods.hyperparameters import Hyperparameter

EPS = 1e-8
GAMMA_GRID = (1e-2, 1e-3, 1e-4)


class _Logits(nn.Module):
    """FAMO's task logits xi and the min losses m (a buffer), so ``to`` and ``state_dict`` see both."""

    def __init__(self, min_losses: Tensor) -> None:
        super().__init__()
        self.xi = nn.Parameter(torch.zeros(min_losses.numel()))
        self.register_buffer("min_losses", min_losses.clone())


@register_method
class FAMO(LossWeightingMethod):
    """z = softmax(xi); backprop T * sum_i c z_i log(L_i - m_i); xi updated from the loss decrease."""

    name = "famo"
    title = "FAMO"
    citation = "Liu, Feng, Stone & Liu, FAMO: Fast Adaptive Multitask Optimization, NeurIPS 2023"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter("gamma", 1e-3, "weight decay (regularisation) of the task logits", low=0.0),
        Hyperparameter("logits_lr", 0.025, "Adam learning rate of the task logits", low=0.0, low_inclusive=False),
        Hyperparameter("min_losses", None, "comma-separated lower bound of each task loss (default 0)", kind="floats"),
        Hyperparameter("max_norm", 0.0, "clip the shared gradient to this norm after backward (0: off)", low=0.0),
    )
    grids: ClassVar[Mapping[str, Mapping[str, Sequence[float]]]] = {
        problem: {"gamma": GAMMA_GRID} for problem in ("multi_mnist", "cityscapes", "qm9")
    }
    stateless = False
    needs_extra_forward = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        given = self.hparams["min_losses"]
        if given is not None and len(given) != n_tasks:
            raise UserInputError(f"famo: min_losses={given!r} has {len(given)} values; {n_tasks} tasks need {n_tasks}")
        minimum = torch.tensor(given, dtype=torch.float32) if given is not None else torch.zeros(n_tasks)
        self.logits = _Logits(minimum)
        self.logits_optimizer = torch.optim.Adam(
            [self.logits.xi], lr=self.hparams["logits_lr"], weight_decay=self.hparams["gamma"]
        )
        self.previous_losses: Tensor | None = None

    def task_weights(self) -> Tensor:
        """z = softmax(xi), the weights on the log losses (sum 1)."""
        return torch.softmax(self.logits.xi.detach(), dim=0)

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        z = self.task_weights().to(losses)
        shifted = losses - self.logits.min_losses.to(losses) + EPS
        inverse = z / shifted.detach()
        c = 1.0 / inverse.sum()
        total = self.n_tasks * c * (z * torch.log(shifted)).sum()
        self.previous_losses = losses.detach()
        return total, (self.n_tasks * c * inverse).detach()

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        total, weights = self.weighted_loss(losses)
        total.backward()
        if self.hparams["max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in shared_parameters if p.grad is not None], self.hparams["max_norm"]
            )
        return StepResult(weights)

    def logit_gradient(self, before: Tensor, after: Tensor) -> Tensor:
        """J_softmax(xi)^T delta with delta_i = log D_i(before) - log D_i(after) (FAMO's logit update)."""
        xi = self.logits.xi.detach()
        minimum = self.logits.min_losses.to(xi)
        delta = torch.log(before.to(xi) - minimum + EPS) - torch.log(after.to(xi) - minimum + EPS)
        z = torch.softmax(xi, dim=0)
        return z * (delta - (z * delta).sum())

    def after_step(self, recompute_losses: Callable[[], Tensor] | None = None) -> None:
        if recompute_losses is None:
            raise UserInputError(
                "famo: after_step needs recompute_losses (the losses on the same batch after the step)"
            )
        if self.previous_losses is None:
            return
        with torch.no_grad():
            after = recompute_losses().detach().reshape(-1)
            gradient = self.logit_gradient(self.previous_losses, after)
        self.logits_optimizer.zero_grad(set_to_none=True)
        self.logits.xi.grad = gradient
        self.logits_optimizer.step()
        self.previous_losses = None

    def extra_state(self) -> dict[str, Any]:
        return {"previous_losses": None if self.previous_losses is None else self.previous_losses.clone()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.previous_losses = state.get("previous_losses")
