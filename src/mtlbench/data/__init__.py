"""Datasets: where they come from, where they are cached, how they are checked.

Each dataset module registers a :class:`DatasetSource` in ``DATASETS`` so that
``mtlbench data fetch NAME`` and ``mtlbench data info`` work for it.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, Protocol

from mtlbench.registry import Registry


class DatasetSource(Protocol):
    """A dataset ``mtlbench data`` knows about."""

    name: str
    description: str

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        """Get the data into the cache (from ``source`` when given); return a one-line summary."""
        ...

    def info(self) -> dict[str, Any]:
        """What is cached: paths, sizes, checksums, counts (empty dict if nothing is cached)."""
        ...


class _DatasetRegistry(Registry[DatasetSource]):
    _imported = False

    def _load_entry_points(self) -> None:
        if not self._imported:
            self._imported = True
            for module in pkgutil.iter_modules(__path__):
                if not module.name.startswith("_") and module.name != "cache":
                    importlib.import_module(f"{__name__}.{module.name}")
        super()._load_entry_points()


DATASETS: Registry[DatasetSource] = _DatasetRegistry("dataset")


def register_dataset(source: DatasetSource) -> DatasetSource:
    return DATASETS.register(source.name, source)
