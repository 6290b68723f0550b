"""The SMTO library: every method registered by name.

- ``create(name, n_tasks=T, **hyperparameters)`` returns the object a training loop calls each step.
- ``aggregate(name, gradients, ...)`` combines a (T, D) gradient matrix without any training loop.
- ``METHODS`` is the registry; third-party methods register with :func:`register_method` or the
  ``mtlbench.methods`` entry-point group.

Every module of this package is imported on first use of the registry, so a new method needs only its own
module (and ``python -m mtlbench.catalog --write`` so that ``mtlbench methods`` lists it without torch).
Importing this package does not import torch; the base classes are loaded on first access.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from mtlbench.errors import UserInputError
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.registry import Registry

if TYPE_CHECKING:  # imported lazily (they import torch): ``import mtlbench.methods`` stays cheap
    import torch
    from torch import Tensor

    from mtlbench.methods.base import (
        Aggregation,
        GradientMethod,
        HeadGradient,
        LossWeightingMethod,
        Method,
        MethodKind,
        StepResult,
        TrainingContext,
    )

_FROM_BASE = {
    "Aggregation",
    "GradientMethod",
    "HeadGradient",
    "LossWeightingMethod",
    "Method",
    "MethodKind",
    "StepResult",
    "TrainingContext",
}


def __getattr__(name: str) -> Any:
    """The base classes, and submodules, on first access (PEP 562)."""
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    if name in {module.name for module in pkgutil.iter_modules(__path__)}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "METHODS",
    "Aggregation",
    "GradientMethod",
    "HeadGradient",
    "Hyperparameter",
    "LossWeightingMethod",
    "Method",
    "MethodKind",
    "StepResult",
    "TrainingContext",
    "aggregate",
    "create",
    "get",
    "register_method",
]

_INFRASTRUCTURE = {"base", "gradients", "hyperparameters", "solvers"}


class _MethodRegistry(Registry["type[Method]"]):
    _imported = False

    def _load_entry_points(self) -> None:
        if not self._imported:
            self._imported = True
            for module in pkgutil.iter_modules(__path__):
                if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{module.name}")
        super()._load_entry_points()


METHODS: Registry[type[Method]] = _MethodRegistry("method", "mtlbench.methods")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a :class:`Method` subclass under its ``name``."""
    return METHODS.register(cls.name, cls)


def get(name: str) -> type[Method]:
    """The method class registered under ``name`` (one-line error listing the names if unknown)."""
    return METHODS[name]


def create(name: str, n_tasks: int, *, generator: torch.Generator | None = None, **hyperparameters: Any) -> Method:
    """A ready-to-use method object for a training loop with ``n_tasks`` tasks."""
    return get(name)(n_tasks, generator=generator, **hyperparameters)


def aggregate(
    name: str,
    gradients: Tensor,
    *,
    losses: Tensor | None = None,
    features: Tensor | None = None,
    state: Any = None,
    generator: torch.Generator | None = None,
    **hyperparameters: Any,
) -> Aggregation:
    """Combine a (T, D) matrix of per-task gradients with method ``name``.

    Returns an :class:`Aggregation` with ``.direction`` (D,), ``.weights`` (T,) or None, and the new
    ``.state`` (pass it back on the next call for stateful methods such as Nash-MTL or GradVac).
    """
    from mtlbench.methods.base import GradientMethod

    cls = get(name)
    if not issubclass(cls, GradientMethod):
        raise UserInputError(f"{name} does not combine gradients (it is a {cls.kind} method); use create()")
    if gradients.ndim != 2:
        raise UserInputError(f"gradients must be a (T, D) matrix, got shape {tuple(gradients.shape)}")
    method = cls(gradients.shape[0], generator=generator, **hyperparameters)
    return method.combine(
        gradients,
        losses=losses,
        features=features,
        state=method.initial_state() if state is None else state,
        generator=generator,
    )
