"""The seam for multi-task optimizers.

Conventions (``../shared/REFERENCE.md``): task weights sum to T, so Unit. Scal. is weights all ones,
the plain sum of the losses. The ``weights`` a step reports are the effective coefficients c_i such
that the shared direction is sum_i c_i g_i before any global rescale; None where no such
coefficients exist (PCGrad, GradDrop).

Three families share the :class:`Method` interface that the trainer (or a user's own loop) calls:

- :class:`LossWeightingMethod`: returns weights (or a weighted loss) and backpropagates it once.
- :class:`GradientMethod`: combines per-task gradients w.r.t. the shared parameters or the shared
  representation through :meth:`GradientMethod.combine`, a pure function also reachable without
  any training loop through :func:`mtlbench.methods.aggregate`.
- model-changing methods (RotoGrad, Auto-Lambda) subclass :class:`Method` directly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.methods.gradients import (
    EngineOptions,
    accumulate_direction,
    accumulate_grad,
    gradient_bytes,
    gram_factor,
    gramian,
    per_task_gradients,
)
from mtlbench.methods.hyperparameters import Hyperparameter, validate_hyperparameters

if TYPE_CHECKING:
    from mtlbench.models.base import MultiTaskModel
    from mtlbench.problems.base import Batch


class MethodKind(StrEnum):
    LOSS = "loss"
    PARAMETERS = "gradient-parameters"
    REPRESENTATION = "gradient-representation"
    MODEL = "model-changing"


class HeadGradient(StrEnum):
    """What a task's head receives: its plain own-task gradient, or the weighted one (c_i * g_head)."""

    OWN = "own"
    WEIGHTED = "weighted"


@dataclass
class Aggregation:
    """What combining per-task gradients returns: the direction, the weights (or None) and new state."""

    direction: Tensor
    weights: Tensor | None
    state: Any = None
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class StepResult:
    """What a training step of a method reports: the task weights it used (sum T) and extra numbers."""

    weights: Tensor | None
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingContext:
    """What the trainer tells a method that needs more than the losses (Auto-Lambda, RotoGrad, GradNorm)."""

    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    lr: float
    weight_decay: float
    task_names: list[str]
    loss_types: list[str]
    compute_losses: Callable[[Batch], Tensor]
    next_validation_batch: Callable[[], Batch] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: the training batch of the step in progress (Auto-Lambda's finite differences re-evaluate the
    #: training losses on it, as its reference code does); None where the loop does not provide it
    current_batch: Callable[[], Batch] | None = None


class Method:
    """Base class of every multi-task optimizer.

    Subclasses declare the class attributes below and implement :meth:`backward`. The per-step
    protocol of a training loop is::

        optimizer.zero_grad()
        result = method.backward(losses, shared_parameters, features=z, task_parameters=heads)
        optimizer.step()
        method.after_step(recompute_losses)   # only FAMO-like methods use the closure
        ...
        method.end_epoch(mean_losses)           # DWA
    """

    name: ClassVar[str]
    title: ClassVar[str]
    citation: ClassVar[str]
    kind: ClassVar[MethodKind]
    head_gradient: ClassVar[HeadGradient]
    hyperparameters: ClassVar[tuple[Hyperparameter, ...]] = ()
    #: grids searched by 000 (Appendix A.6) per problem name; key "default" for any other problem
    grids: ClassVar[Mapping[str, Mapping[str, Sequence[Any]]]] = {}
    stateless: ClassVar[bool] = True
    randomized: ClassVar[bool] = False
    needs_extra_forward: ClassVar[bool] = False
    needs_context: ClassVar[bool] = False
    #: lowest number of tasks the method is defined for
    min_tasks: ClassVar[int] = 1

    def __init__(self, n_tasks: int, *, generator: torch.Generator | None = None, **hyperparameters: Any):
        if not isinstance(n_tasks, int) or n_tasks < self.min_tasks:
            raise UserInputError(f"{self.name}: n_tasks={n_tasks!r} is invalid; it needs at least {self.min_tasks}")
        self.n_tasks = n_tasks
        self.hparams: dict[str, Any] = self.validate(hyperparameters)
        self.generator = generator
        self.counters: Counter[str] = Counter()
        self.device = torch.device("cpu")

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``values``; raise a one-line error for unknown or bad values."""
        return validate_hyperparameters(cls.name, cls.hyperparameters, values)

    @classmethod
    def grid(cls, problem: str) -> dict[str, list[Any]]:
        """The method-specific grid 000 searched on ``problem`` (empty if none)."""
        chosen = cls.grids.get(problem, cls.grids.get("default", {}))
        return {key: list(values) for key, values in chosen.items()}

    # --- hooks -------------------------------------------------------------------------------
    def attach(self, context: TrainingContext) -> None:
        """Called once by the trainer before training; methods that need a context override it."""

    def wrap_model(self, model: MultiTaskModel) -> MultiTaskModel:
        """Model-changing methods (RotoGrad) install their modules here; others return the model."""
        return model

    def parameters(self) -> list[nn.Parameter]:
        """The method's own parameters that the *main* optimizer updates (UW's log-variances)."""
        return []

    def to(self, device: torch.device | str) -> Method:
        self.device = torch.device(device)
        for module in self._modules():
            module.to(self.device)
        return self

    def _modules(self) -> Iterable[nn.Module]:
        return [value for value in vars(self).values() if isinstance(value, nn.Module)]

    @abstractmethod
    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        """Fill ``.grad`` of the shared and task parameters from the per-task ``losses`` (T,)."""

    def after_step(self, recompute_losses: Callable[[], Tensor] | None = None) -> None:
        """Called after the optimizer step; ``recompute_losses`` gives the losses on the same batch."""

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Called with the epoch's mean training loss per task (DWA)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the method from a checkpoint."""
        modules = {name: value.state_dict() for name, value in vars(self).items() if isinstance(value, nn.Module)}
        optimizers = {
            name: value.state_dict() for name, value in vars(self).items() if isinstance(value, torch.optim.Optimizer)
        }
        return {"modules": modules, "optimizers": optimizers, "counters": dict(self.counters), **self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, module_state in state.get("modules", {}).items():
            getattr(self, name).load_state_dict(module_state)
        for name, optimizer_state in state.get("optimizers", {}).items():
            getattr(self, name).load_state_dict(optimizer_state)
        self.counters = Counter(state.get("counters", {}))
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """Non-module state to checkpoint (e.g. a solver's warm start); override with load_extra_state."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


def _head_gradients_by_full_backward(
    losses: Tensor, coefficients: Tensor, shared: Sequence[Tensor], retain_graph: bool
) -> None:
    """Heads' gradients when the caller did not name them: backprop sum c_i L_i, keep shared .grad."""
    saved = [None if p.grad is None else p.grad.clone() for p in shared]
    (coefficients.detach() * losses).sum().backward(retain_graph=retain_graph)
    for p, g in zip(shared, saved, strict=True):
        p.grad = g


class LossWeightingMethod(Method):
    """Methods that only reweight the losses: one backward pass of sum_i w_i L_i.

    Subclasses implement :meth:`loss_weights` (weights summing to T, treated as constants), or
    override :meth:`weighted_loss` when the objective is more than a weighted sum (UW).
    """

    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED

    def loss_weights(self, losses: Tensor) -> Tensor:
        raise NotImplementedError

    def weighted_loss(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """The scalar to backpropagate and the effective weights (detached) it applies."""
        weights = self.loss_weights(losses.detach()).detach().to(losses)
        return (weights * losses).sum(), weights

    def backward(self, losses, shared_parameters, *, features=None, task_parameters=None) -> StepResult:
        total, weights = self.weighted_loss(losses)
        total.backward()
        return StepResult(weights.detach())


class GradientMethod(Method):
    """Methods that combine per-task gradients, w.r.t. the shared parameters or the representation.

    Subclasses implement :meth:`combine`. ``space`` (a hyperparameter every gradient method has)
    chooses where it acts; ``default_space`` follows the reference code (REFERENCE.md, "Methods").
    """

    default_space: ClassVar[str] = "parameters"
    head_gradient = HeadGradient.OWN
    #: :meth:`combine` uses the gradients only through their Gramian G G^T and returns a linear
    #: combination of them; the engine may then hand it a T x T factor of the Gramian instead of
    #: the (T, D) matrix (``engine.path = "gramian"``, :func:`mtlbench.methods.gradients.gramian`)
    gramian_only: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not any(h.name == "space" for h in cls.hyperparameters):
            cls.hyperparameters = (
                *cls.hyperparameters,
                Hyperparameter(
                    "space",
                    cls.default_space,
                    "where the per-task gradients are taken: shared parameters or shared representation",
                    kind="str",
                    choices=("parameters", "representation"),
                ),
            )
        cls.kind = MethodKind.PARAMETERS if cls.default_space == "parameters" else MethodKind.REPRESENTATION

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.state: Any = self.initial_state()
        #: how per-task gradients are obtained (exact whatever the choice; see ``gradients.py``)
        self.engine = EngineOptions()

    def initial_state(self) -> Any:
        """The state a stateful method starts from (None for stateless methods)."""
        return None

    @abstractmethod
    def combine(
        self,
        gradients: Tensor,
        *,
        losses: Tensor | None = None,
        features: Tensor | None = None,
        state: Any = None,
        generator: torch.Generator | None = None,
    ) -> Aggregation:
        """Combine the (T, D) per-task gradients into a direction (D,) and weights (T,) or None.

        A pure function of its arguments: the new state is returned in the :class:`Aggregation`.
        ``features`` is the representation (for its shape) when acting on it.
        """

    def extra_state(self) -> dict[str, Any]:
        return {"state": self.state}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.state = state.get("state", self.initial_state())

    def _uses_gramian(self, n_tasks: int, shared: Sequence[Tensor]) -> bool:
        if not self.gramian_only or not shared:
            return False
        if self.engine.path == "gramian":
            return True
        budget = self.engine.max_gradient_bytes
        return self.engine.path == "auto" and budget is not None and gradient_bytes(n_tasks, shared) > budget

    def _record(self, result: Aggregation) -> None:
        self.state = result.state
        for key, value in result.info.items():
            if key.startswith("count_"):
                self.counters[key.removeprefix("count_")] += int(value)

    def _head_backward(
        self, losses: Tensor, weights: Tensor | None, heads: list[list[Tensor]] | None, head_gradients: Any, shared: Any
    ) -> None:
        weighted = self.head_gradient is HeadGradient.WEIGHTED and weights is not None
        if heads is None:
            coefficients = weights if weighted else torch.ones(self.n_tasks, device=losses.device)
            _head_gradients_by_full_backward(losses, coefficients, shared, retain_graph=False)
            return
        for i, (params, grads) in enumerate(zip(heads, head_gradients, strict=True)):
            if weighted:
                scale = weights[i]
                grads = [None if g is None else g * scale for g in grads]
            accumulate_grad(params, grads, owned=True)

    def backward(self, losses, shared_parameters, *, features=None, task_parameters=None) -> StepResult:
        shared = [p for p in shared_parameters if p.requires_grad]
        on_representation = self.hparams["space"] == "representation"
        if on_representation and features is None:
            raise UserInputError(f"{self.name}: space=representation needs the shared features (features=...)")
        heads = [list(ps) for ps in task_parameters] if task_parameters is not None else None
        if not on_representation and self._uses_gramian(losses.shape[0], shared):
            return self._backward_gramian(losses, shared, features, heads)
        inputs = [features] if on_representation else shared
        path = "loop" if self.engine.path in ("auto", "gramian") else self.engine.path
        gradients, head_gradients = per_task_gradients(
            losses,
            inputs,
            heads,
            retain_graph=on_representation or heads is None,
            features=None if on_representation else features,
            path=path,
            chunk_size=self.engine.chunk_size,
        )
        result = self.combine(
            gradients, losses=losses.detach(), features=features, state=self.state, generator=self.generator
        )
        del gradients
        self._record(result)
        direction = result.direction
        if on_representation:
            features.backward(direction.view_as(features).to(features.dtype), retain_graph=heads is None)
        else:
            accumulate_direction(shared, direction)
        self._head_backward(losses, result.weights, heads, head_gradients, shared)
        return StepResult(None if result.weights is None else result.weights.detach(), dict(result.info))

    def _backward_gramian(
        self, losses: Tensor, shared: list[Tensor], features: Tensor | None, heads: list[list[Tensor]] | None
    ) -> StepResult:
        """Gramian-only step: G G^T by blocks, the method on a T x T factor, one backward of sum_i c_i L_i."""
        K, head_gradients = gramian(losses, shared, heads, max_bytes=self.engine.max_gradient_bytes, retain_graph=True)
        R, R_pinv = gram_factor(K)
        result = self.combine(R, losses=losses.detach(), features=features, state=self.state, generator=self.generator)
        self._record(result)
        coefficients = result.direction.detach().to("cpu", torch.float64) @ R_pinv
        grads = torch.autograd.grad(
            losses, shared, grad_outputs=coefficients.to(losses), retain_graph=heads is None, allow_unused=True
        )
        accumulate_grad(shared, grads, owned=True)
        weights = None if result.weights is None else result.weights.to(losses)
        self._head_backward(losses, weights, heads, head_gradients, shared)
        return StepResult(None if weights is None else weights.detach(), dict(result.info))
