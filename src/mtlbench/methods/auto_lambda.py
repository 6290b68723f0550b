"""Auto-Lambda: task weights learned by a meta-gradient of the validation loss.

Liu, James, Davison & Johns (2022), *Auto-Lambda: Disentangling Dynamic Task Relationships*, TMLR;
reference code ``lorenmt/auto-lambda`` (``auto_lambda.py``, ``trainer_dense.py``) as adapted by Gama &
Grassi (000, ``optimizers/auto_lambda.py``: the "all tasks are primary" multi-task setting, the
meta batch drawn from the validation split, meta lr = lr x ``lr_scale``).

The paper's bilevel problem (multi-task setting, every task primary): min_lambda sum_i L_i^val(theta*(lambda)),
theta*(lambda) = argmin_theta sum_i lambda_i L_i^train(theta). Each step, before the training update:

1. virtual step with the main optimizer's current settings (SGD form, as the reference does for
   any optimizer): theta' = theta - a (m + sum_i lambda_i grad L_i^train(theta) + wd theta), a the
   current lr, wd the optimizer's weight decay, m the SGD momentum buffer x momentum (0 for Adam);
2. d = grad_theta' L^val(theta'), L^val = sum_i L_i^val on the next validation batch;
3. hypergradient dL^val/dlambda_i = -a h_i with h_i = grad L_i^train(theta) . d, either
   - ``finite_difference`` (the reference): eps = 0.01 / ||d||,
     h_i = (L_i^train(theta + eps d) - L_i^train(theta - eps d)) / (2 eps) (the paper's DARTS-style
     approximation of the Hessian-vector product), which re-evaluates the
     training losses and needs the step's batch (``TrainingContext.current_batch``), or
   - ``exact``: h_i from the per-task gradients of the step's own losses (T backward passes;
     what the finite difference approximates, to O(eps^2));
   ``auto`` (default) uses the finite difference when the loop gives the batch, else exact;
4. lambda takes one step of its own Adam (lr = the initial main lr x ``lr_scale``, as 000's code);
5. the network is trained on sum_i lambda_i L_i with the updated lambda (heads weighted).

The virtual and perturbed models are evaluated by substituting parameters (and clones of the
buffers, so batch-norm statistics of the live model are untouched) in the live model; the
reference instead keeps a deep copy for theta' and perturbs the live model in place, so its three
training-batch forwards (theta, theta + eps d, theta - eps d) update the live batch-norm running
statistics: ``batchnorm_stats=live`` does that too (one extra no-grad forward at theta; mtlbench
runs them after the step's own forward, 000 before it). ``meta_batch_size`` sets the validation
batch size of the meta step (000: its validation loader's, 100 on Multi-MNIST).

lambda starts at ``initial_weight`` = 0.1 for every task (sum 0.1 T, not T) and is neither
normalised nor clipped, as in the reference: the training loss is sum_i lambda_i L_i with the raw
values. Following mtlbench's convention the reported ``weights`` are rescaled to sum T,
T lambda / sum_j lambda_j (raw lambda when sum_j lambda_j <= 0); ``info["lambda_sum"]`` is
sum_j lambda_j, so raw lambda = weights x lambda_sum / T.

Best ``lr_scale`` in 000's code: 0.1 (CL_CR), 100 (CL_RR, RL_RR), 1e-4 (Cityscapes), 10 (QM9).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, Method, MethodKind, StepResult, TrainingContext
from mtlbench.methods.gradients import accumulate_grad
from mtlbench.methods.hyperparameters import Hyperparameter

FD_RADIUS = 0.01  # the reference's eps = 0.01 / ||d||
GRID = (1000.0, 100.0, 10.0, 1.0, 0.1, 0.01, 0.001)


class MetaWeights(nn.Module):
    """The task weights lambda, a module so that checkpoints and ``to(device)`` handle them."""

    def __init__(self, n_tasks: int, initial: float) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.full((n_tasks,), float(initial)))


@contextmanager
def substituted(model: nn.Module, values: Mapping[int, Tensor], *, live_buffers: bool = False) -> Iterator[None]:
    """Run ``model`` with each parameter p replaced by ``values[id(p)]`` and its buffers by clones.

    Nothing is modified in place, so graphs built on the live parameters stay valid; tied
    parameters stay tied; RNN modules notice the swapped weights (as with ``functional_call``).
    ``live_buffers`` keeps the live buffers instead (batch-norm running statistics get updated).
    """
    replaced: list[tuple[dict[str, Any], str, Tensor]] = []
    clones: dict[int, Tensor] = {}
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None and id(p) in values:
                replaced.append((module._parameters, name, p))
        for name, b in module._buffers.items():
            if b is not None and not live_buffers:
                replaced.append((module._buffers, name, b))
    try:
        for store, name, original in replaced:
            if id(original) in values:
                store[name] = values[id(original)]
            else:
                store[name] = clones.setdefault(id(original), original.detach().clone())
        yield
    finally:
        for store, name, original in replaced:
            store[name] = original


def _weighted_sum(weights: Tensor, tensors: Sequence[Tensor | None]) -> Tensor | None:
    total = None
    for w, t in zip(weights, tensors, strict=True):
        if t is not None:
            total = w * t if total is None else total + w * t
    return total


def _dot(left: Sequence[Tensor | None], right: Sequence[Tensor | None]) -> Tensor:
    total = None
    for a, b in zip(left, right, strict=True):
        if a is None or b is None:
            continue
        term = (a * b).sum()
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total


@register_method
class AutoLambda(Method):
    """Weights lambda updated by the meta-gradient of the validation loss after a virtual step (Liu et al. 2022)."""

    name = "auto_lambda"
    title = "Auto-Lambda"
    citation = "Liu, James, Davison & Johns, Auto-Lambda: Disentangling Dynamic Task Relationships, TMLR 2022"
    kind = MethodKind.MODEL
    head_gradient = HeadGradient.WEIGHTED
    hyperparameters = (
        Hyperparameter(
            "lr_scale",
            0.1,
            "learning rate of lambda = main lr x lr_scale (000's code default 0.1)",
            low=0.0,
            low_inclusive=False,
        ),
        Hyperparameter("initial_weight", 0.1, "initial lambda of every task (reference: 0.1)", low=0.0),
        Hyperparameter(
            "hypergradient",
            "auto",
            "finite_difference (the reference; needs the step's batch), exact (per-task gradients), "
            "or auto (finite_difference when the loop gives the batch)",
            kind="str",
            choices=("auto", "finite_difference", "exact"),
        ),
        Hyperparameter(
            "meta_batch_size",
            None,
            "batch size of the validation batches of the meta step (default: the training batch size; "
            "000's code: 100 on Multi-MNIST)",
            kind="int",
            low=1,
        ),
        Hyperparameter(
            "batchnorm_stats",
            "isolated",
            "isolated: the extra forwards leave the live batch-norm running statistics untouched; live: the "
            "training-batch forwards at theta, theta + eps d and theta - eps d update them, as 000's code",
            kind="str",
            choices=("isolated", "live"),
        ),
    )
    grids: ClassVar[Mapping[str, Mapping[str, Sequence[Any]]]] = {
        "multi_mnist": {"lr_scale": GRID},  # RL_RR: 1000 ... 0.01, 0.001, 0.0001 (no 0.1)
        "cityscapes": {"lr_scale": (100.0, 10.0, 1.0, 0.1, 0.01, 0.001, 0.0001)},
        "qm9": {"lr_scale": (100.0, 10.0, 1.0)},
        "default": {"lr_scale": GRID},
    }
    stateless = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.meta = MetaWeights(n_tasks, self.hparams["initial_weight"])
        self.meta_optimizer = torch.optim.Adam(self.meta.parameters(), lr=self.hparams["lr_scale"] * 1e-3)
        self.context: TrainingContext | None = None

    def attach(self, context: TrainingContext) -> None:
        if context.next_validation_batch is None:
            raise UserInputError("auto_lambda needs validation batches (TrainingContext.next_validation_batch)")
        self.context = context
        for group in self.meta_optimizer.param_groups:
            group["lr"] = context.lr * self.hparams["lr_scale"]

    @property
    def weights(self) -> Tensor:
        """The raw task weights lambda (detached)."""
        return self.meta.weights.detach()

    def _context(self) -> TrainingContext:
        if self.context is None:
            raise UserInputError("auto_lambda needs the trainer's context: call attach(context) first")
        return self.context

    def _mode(self, train_batch: Any) -> str:
        mode = self.hparams["hypergradient"]
        if mode == "auto":
            return "exact" if train_batch is None else "finite_difference"
        if mode == "finite_difference" and train_batch is None:
            raise UserInputError(
                "auto_lambda: hypergradient=finite_difference re-evaluates the training losses and needs the "
                "step's batch (TrainingContext.current_batch); use hypergradient=exact or auto"
            )
        return mode

    # --- the hypergradient ---------------------------------------------------------------------
    def hypergradient(
        self, losses: Tensor, validation_batch: Any, *, train_batch: Any = None
    ) -> tuple[Tensor, list[list[Tensor | None]] | None]:
        """dL^val(theta') / dlambda at the current lambda, and the per-task gradients if computed.

        ``losses`` are the step's training losses (with their graph, kept); ``train_batch`` the batch
        they come from (for the finite difference).
        """
        context = self._context()
        model = context.model
        parameters = [p for p in model.parameters() if p.requires_grad]
        lam = self.weights.to(losses)
        mode = self._mode(train_batch)

        per_task: list[list[Tensor | None]] | None = None
        if mode == "exact":
            per_task = [
                list(torch.autograd.grad(losses[i], parameters, retain_graph=True, allow_unused=True))
                for i in range(self.n_tasks)
            ]
            combined = [_weighted_sum(lam, [g[j] for g in per_task]) for j in range(len(parameters))]
        else:
            combined = list(torch.autograd.grad((lam * losses).sum(), parameters, retain_graph=True, allow_unused=True))

        # virtual step theta' = theta - a (m + g + wd theta)
        groups = {id(p): group for group in context.optimizer.param_groups for p in group["params"]}
        default_group = context.optimizer.param_groups[0]
        step = float(default_group["lr"])
        virtual: dict[int, Tensor] = {}
        for p, g in zip(parameters, combined, strict=True):
            group = groups.get(id(p), default_group)
            update = torch.zeros_like(p) if g is None else g.detach().clone()
            update.add_(p.detach(), alpha=float(group.get("weight_decay", 0.0)))
            if "momentum" in group:
                buffer = context.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    update.add_(buffer, alpha=float(group["momentum"]))
            virtual[id(p)] = (p.detach() - step * update).requires_grad_(True)
        with substituted(model, virtual), torch.enable_grad():
            validation_loss = context.compute_losses(validation_batch).sum()
        direction = list(torch.autograd.grad(validation_loss, [virtual[id(p)] for p in parameters], allow_unused=True))

        if per_task is not None:
            products = torch.stack([_dot(g, direction).to(losses) for g in per_task])
        else:
            squares = [d.pow(2).sum() for d in direction if d is not None]
            norm = torch.stack(squares).sum().sqrt() if squares else torch.zeros(())
            if float(norm) == 0.0:
                products = torch.zeros_like(lam)
            else:
                eps = FD_RADIUS / norm
                plus = {
                    id(p): p.detach() + eps * d for p, d in zip(parameters, direction, strict=True) if d is not None
                }
                minus = {
                    id(p): p.detach() - eps * d for p, d in zip(parameters, direction, strict=True) if d is not None
                }
                live = self.hparams["batchnorm_stats"] == "live"
                with torch.no_grad():
                    with substituted(model, plus, live_buffers=live):
                        high = context.compute_losses(train_batch).detach()
                    with substituted(model, minus, live_buffers=live):
                        low = context.compute_losses(train_batch).detach()
                products = ((high - low) / (2 * eps)).to(losses)
        return -step * products, per_task

    # --- the step ------------------------------------------------------------------------------
    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        context = self._context()
        train_batch = context.current_batch() if context.current_batch is not None else None
        size = self.hparams["meta_batch_size"]
        validation_batch = context.next_validation_batch(size) if size else context.next_validation_batch()
        if self.hparams["batchnorm_stats"] == "live" and train_batch is not None:
            with torch.no_grad():  # 000's virtual step runs its own forward at theta on the live model
                context.compute_losses(train_batch)
        meta_gradient, per_task = self.hypergradient(losses, validation_batch, train_batch=train_batch)

        self.meta_optimizer.zero_grad(set_to_none=True)
        self.meta.weights.grad = meta_gradient.detach().to(self.meta.weights)
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)

        lam = self.weights.to(losses)
        if per_task is None:
            (lam * losses).sum().backward()
        else:
            parameters = [p for p in context.model.parameters() if p.requires_grad]
            for i, grads in enumerate(per_task):
                accumulate_grad(parameters, [None if g is None else lam[i] * g for g in grads])
        total = lam.sum()
        reported = lam * self.n_tasks / total if float(total) > 0 else lam
        self.counters[f"hypergradient_{'exact' if per_task is not None else 'finite_difference'}"] += 1
        return StepResult(reported.detach(), {"lambda_sum": float(total)})
