"""Sweeps: the benchmark protocol of 000 (section 3, Appendix A.6) as one resumable command.

``load_spec`` reads a sweep file (or a built-in spec, ``builtin_specs()``), ``Sweep(spec, store).run()``
trains the single-task references, the grid search, the selection and the final seeds on a local
process pool or Ray, skipping every run already completed in the results store.
"""

from mtlbench.sweeps.executors import EXECUTORS, Executor, RunOutcome
from mtlbench.sweeps.plan import Candidate, Group, Selection, SweepPlan, Trial, expand
from mtlbench.sweeps.runner import DryRun, Sweep, SweepReport, SweepReporter
from mtlbench.sweeps.spec import SweepSpec, builtin_specs, load_spec, parse_spec

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
