"""The papers' tables and figures as one command each: ``mtlbench study NAME --scale SCALE``.

Every module of this package whose name starts with ``p`` (``p000_mnist``, ``p001_toy``, ...) defines
one :class:`~mtlbench.studies.base.Study` subclass and registers it with :func:`register_study`;
``STUDIES`` is the registry (third-party studies: the ``mtlbench.studies`` entry-point group). Study
modules import torch and pandas only inside their functions, so listing studies stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

from mtlbench.registry import Registry
from mtlbench.studies.base import Study


class _StudyRegistry(Registry[type[Study]]):
    _imported = False

    def _load_entry_points(self) -> None:
        if not self._imported:
            self._imported = True
            for module in pkgutil.iter_modules(__path__):
                if module.name.startswith("p") and module.name[1:4].isdigit():
                    importlib.import_module(f"{__name__}.{module.name}")
        super()._load_entry_points()


STUDIES: Registry[type[Study]] = _StudyRegistry("study", "mtlbench.studies")


def register_study(cls: type[Study]) -> type[Study]:
    """Class decorator: register a :class:`Study` subclass under its ``name``."""
    return STUDIES.register(cls.name, cls)


def get(name: str) -> Study:
    """A study instance by name (one-line error listing the names if unknown)."""
    return STUDIES[name]()


__all__ = ["STUDIES", "Study", "get", "register_study"]
