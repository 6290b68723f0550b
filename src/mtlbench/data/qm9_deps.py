"""Optional dependencies of the QM9 problem (RDKit for featurisation, PyTorch Geometric for the MPNN).

Both are imported lazily, so that ``import mtlbench`` and every other problem work without them; a
missing one becomes a one-line error naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mtlbench.errors import MtlbenchError

EXTRA_HINT = "pip install 'mtlbench[qm9]'"


class MissingDependencyError(MtlbenchError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra)."""


def _require(module: str, package: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{purpose} needs the package {package!r}; run: {EXTRA_HINT}") from None


def require_rdkit() -> ModuleType:
    """The ``rdkit.Chem`` module, or a one-line MissingDependencyError."""
    return _require("rdkit.Chem", "rdkit", "QM9 featurisation")


def require_pyg() -> ModuleType:
    """The ``torch_geometric`` module, or a one-line MissingDependencyError."""
    _require("torch_geometric.nn", "torch_geometric", "the QM9 problem (MPNN)")
    return _require("torch_geometric", "torch_geometric", "the QM9 problem (MPNN)")
