"""Delta_m and mean rank (Gama & Grassi, 000, eq. 1 and 2).

Delta_m = 1/N sum_i 1/M_i sum_j (-1)^{l_ij} (M_smt,ij - M_b,ij) / M_b,ij, in percent, higher is
better (l_ij = 1 where lower is better). MR = 1/N sum_i 1/M_i sum_j R_ij, rank 1 = best.

Two aggregations of the same relative changes (:data:`DELTA_M_VARIANTS`), both in percent with 000's
sign (higher is better; our sign never flips):

- ``delta_m`` (000 eq. 1, the canonical stored value): per task, then over tasks;
- ``delta_m_metrics``: the plain mean over all K = sum_i M_i metrics, as 001, nash-mtl and FAMO
  aggregate (they report its negation, the "drop", lower is better). The two agree when every task
  has the same number of metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from mtlbench.errors import UserInputError

#: task name -> metric name -> value
TaskMetrics = Mapping[str, Mapping[str, float]]
#: task name -> metric name -> higher is better
Directions = Mapping[str, Mapping[str, bool]]


def relative_changes(
    metrics: TaskMetrics, reference: TaskMetrics, directions: Directions
) -> dict[str, dict[str, float]]:
    """Per task and metric, (-1)^l (M - M_ref) / M_ref in percent (positive = better than reference)."""
    changes: dict[str, dict[str, float]] = {}
    for task, task_metrics in metrics.items():
        if task not in reference:
            raise UserInputError(f"no single-task reference for task {task!r}")
        changes[task] = {}
        for name, value in task_metrics.items():
            if name not in reference[task]:
                raise UserInputError(f"no single-task reference for metric {task}/{name}")
            ref = reference[task][name]
            if ref == 0:
                raise UserInputError(f"the reference of {task}/{name} is 0; the relative change is undefined")
            sign = 1.0 if directions[task][name] else -1.0
            changes[task][name] = 100.0 * sign * (value - ref) / abs(ref)
    return changes


def check_reference(reference: TaskMetrics, where: str = "") -> None:
    """A one-line error if a single-task reference metric is exactly 0: its relative change (and so
    Delta_m) is undefined, and every multi-task run against it would fail; checked before training."""
    for task, task_metrics in reference.items():
        for name, value in task_metrics.items():
            if value == 0:
                raise UserInputError(
                    f"{where + ': ' if where else ''}the single-task reference of {task}/{name} is 0, so Delta_m "
                    "(a relative change) is undefined; train the reference longer or drop the metric (leave the "
                    "task out)"
                )


def delta_m(metrics: TaskMetrics, reference: TaskMetrics, directions: Directions) -> float:
    """000 eq. 1, in percent: mean over tasks of the mean over a task's metrics of the relative change."""
    changes = relative_changes(metrics, reference, directions)
    if not changes:
        raise UserInputError("Delta_m needs at least one task")
    return float(np.mean([np.mean(list(task.values())) for task in changes.values()]))


def delta_m_metrics(metrics: TaskMetrics, reference: TaskMetrics, directions: Directions) -> float:
    """The per-metric variant, in percent: the mean over all metrics (of all tasks) of the relative change."""
    changes = relative_changes(metrics, reference, directions)
    values = [value for task in changes.values() for value in task.values()]
    if not values:
        raise UserInputError("Delta_m needs at least one metric")
    return float(np.mean(values))


#: name -> function(metrics, reference, directions) of the Delta_m aggregations mtlbench stores
DELTA_M_VARIANTS = {"delta_m": delta_m, "delta_m_metrics": delta_m_metrics}


def delta_m_from_changes(changes: Mapping[str, Sequence[float]]) -> float:
    """Delta_m from per-task lists of relative changes already in percent (e.g. a paper's table row)."""
    return float(np.mean([np.mean(values) for values in changes.values()]))


def mean_ranks(results: Mapping[str, TaskMetrics], directions: Directions) -> dict[str, float]:
    """000 eq. 2 for several methods: rank methods on each metric (1 = best, ties share the mean rank),
    average ranks within a task, then over tasks."""
    methods = list(results)
    if not methods:
        return {}
    tasks = list(directions)
    per_task: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for task in tasks:
        task_ranks = []
        for metric, higher in directions[task].items():
            values = np.array([results[m][task][metric] for m in methods], dtype=float)
            if np.isnan(values).any():
                raise UserInputError(f"metric {task}/{metric} is missing for some method")
            task_ranks.append(rankdata(-values if higher else values, method="average"))
        mean_in_task = np.mean(task_ranks, axis=0)
        for index, method in enumerate(methods):
            per_task[method].append(mean_in_task[index])
    return {m: float(np.mean(per_task[m])) for m in methods}


def is_finite(value: float) -> bool:
    return value is not None and math.isfinite(value)
