"""Benchmark problems, registered by name (``PROBLEMS``); third parties use the
``mtlbench.problems`` entry-point group or :func:`register_problem`.

Every module of this package is imported on first use of the registry (``python -m mtlbench.catalog --write``
then lets ``mtlbench problems`` list a new one without importing torch). Importing this package does not
import torch; the base classes are loaded on first access.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from mtlbench.registry import Registry

if TYPE_CHECKING:  # imported lazily (they import torch): ``import mtlbench.problems`` stays cheap
    from mtlbench.problems.base import Batch, HeadSpec, Metric, Problem, ProblemOption, Task, TrainingDefaults

_FROM_BASE = {"Batch", "HeadSpec", "Metric", "Problem", "ProblemOption", "Task", "TrainingDefaults"}


def __getattr__(name: str) -> Any:
    """The base classes, and submodules, on first access (PEP 562)."""
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    if name in {module.name for module in pkgutil.iter_modules(__path__)}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROBLEMS",
    "Batch",
    "HeadSpec",
    "Metric",
    "Problem",
    "ProblemOption",
    "Task",
    "TrainingDefaults",
    "create_problem",
    "register_problem",
]


class _ProblemRegistry(Registry["type[Problem]"]):
    _imported = False

    def _load_entry_points(self) -> None:
        if not self._imported:
            self._imported = True
            for module in pkgutil.iter_modules(__path__):
                if module.name != "base" and not module.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{module.name}")
        super()._load_entry_points()


PROBLEMS: Registry[type[Problem]] = _ProblemRegistry("problem", "mtlbench.problems")


def register_problem(cls: type[Problem]) -> type[Problem]:
    """Class decorator: register a :class:`Problem` subclass under its ``name``."""
    return PROBLEMS.register(cls.name, cls)


def create_problem(name: str, tasks: str | list[str] = "all", **options: Any) -> Problem:
    """Instantiate problem ``name`` with a task list such as ``"CL_RR"`` and its options."""
    return PROBLEMS[name](tasks, **options)
