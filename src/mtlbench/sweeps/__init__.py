"""Sweeps: the benchmark protocol of 000 (section 3, Appendix A.6) as one resumable command.

``load_spec`` reads a sweep file (or a built-in spec, ``builtin_specs()``), ``Sweep(spec, store).run()``
trains the single-task references, the grid search, the selection and the final seeds on a local
process pool or Ray, skipping every run already completed in the results store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlbench.sweeps.executors import EXECUTORS, Executor, RunOutcome
    from mtlbench.sweeps.plan import Candidate, Group, Selection, SweepPlan, Trial, expand
    from mtlbench.sweeps.runner import DryRun, Sweep, SweepReport, SweepReporter
    from mtlbench.sweeps.spec import SweepSpec, builtin_specs, load_spec, parse_spec

#: where each name lives; imported on first access (PEP 562), so ``mtlbench.sweeps.spec`` does not import torch
_LAZY = {
    **dict.fromkeys(("EXECUTORS", "Executor", "RunOutcome"), "executors"),
    **dict.fromkeys(("Candidate", "Group", "Selection", "SweepPlan", "Trial", "expand"), "plan"),
    **dict.fromkeys(("DryRun", "Sweep", "SweepReport", "SweepReporter"), "runner"),
    **dict.fromkeys(("SweepSpec", "builtin_specs", "load_spec", "parse_spec"), "spec"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXECUTORS",
    "Candidate",
    "DryRun",
    "Executor",
    "Group",
    "RunOutcome",
    "Selection",
    "Sweep",
    "SweepPlan",
    "SweepReport",
    "SweepReporter",
    "SweepSpec",
    "Trial",
    "builtin_specs",
    "expand",
    "load_spec",
    "parse_spec",
]
