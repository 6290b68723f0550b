"""The main comparison (000 Tables 1, 3, 4): per method, test metrics, Delta_m and mean rank.

Delta_m is computed per run against the stored single-task reference of the same problem
configuration and averaged over seeds (mean and standard deviation); the mean rank ranks the methods'
seed-averaged metrics (000 eq. 2).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from mtlbench.errors import MissingDataError
from mtlbench.metrics import delta_m, mean_ranks
from mtlbench.problems import create_problem
from mtlbench.problems.base import Problem


def _directions(problem: Problem) -> dict[str, dict[str, bool]]:
    return {task.name: {m.name: m.higher_is_better for m in task.metrics} for task in problem.tasks}


def _label(method: str, params: dict[str, Any], ambiguous: bool) -> str:
    if not ambiguous:
        return method
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "space")
    return f"{method}({shown})" if shown else method


def comparison_table(store: Any, problem: Problem, methods: list[str] | None = None) -> pd.DataFrame:
    """One row per method (per hyperparameter setting if a method has several) on ``problem``'s tasks."""
    reference = store.reference(problem.reference_config(), problem.task_names, "test")
    if reference is None:
        raise MissingDataError(
            f"no single-task reference for {problem.name} {'_'.join(problem.task_names)}; "
            f"run `mtlbench reference --problem {problem.name} --tasks {'_'.join(problem.task_names)}`"
        )
    directions = _directions(problem)
    runs = store.runs(problem=problem.name, tasks=problem.task_names, kind="multi_task", status="completed")
    groups: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = {}
    for run_id in runs["id"] if len(runs) else []:
        run = store.run(int(run_id))
        config = run["config"]
        if methods is not None and config["method"] not in methods:
            continue
        options = create_problem(problem.name, problem.task_names, **config["problem_options"]).option_values
        if options != problem.option_values:
            continue
        key = (config["method"], json.dumps(config["method_params"], sort_keys=True))
        groups.setdefault(key, []).append(run["test_metrics"])
    per_method_settings: dict[str, int] = {}
    for method, _ in groups:
        per_method_settings[method] = per_method_settings.get(method, 0) + 1
    rows, means = [], {}
    for (method, params_json), metric_runs in groups.items():
        label = _label(method, json.loads(params_json), per_method_settings[method] > 1)
        deltas = [delta_m(m, reference, directions) for m in metric_runs]
        mean_metrics = {
            task: {name: float(np.mean([m[task][name] for m in metric_runs])) for name in metrics}
            for task, metrics in directions.items()
        }
        means[label] = mean_metrics
        row: dict[str, Any] = {"method": label, "seeds": len(metric_runs)}
        for task, metrics in mean_metrics.items():
            for name, value in metrics.items():
                row[f"{task} {name}"] = value
        row["Δm (%)"] = float(np.mean(deltas))
        row["Δm std"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else float("nan")
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["method", "seeds", "Δm (%)", "Δm std", "MR"])
    ranks = mean_ranks(means, directions)
    table = pd.DataFrame(rows)
    table["MR"] = table["method"].map(ranks)
    reference_row = {"method": "single-task reference", "seeds": None}
    for task, metrics in reference.items():
        for name, value in metrics.items():
            reference_row[f"{task} {name}"] = value
    table = table.sort_values("Δm (%)", ascending=False, ignore_index=True)
    return pd.concat([pd.DataFrame([reference_row]), table], ignore_index=True)


def to_markdown(table: pd.DataFrame, *, floatfmt: str = ".4g") -> str:
    """A Markdown table; missing values (NaN) are left blank."""
    shown = table.astype(object).where(table.notna(), None)
    return shown.to_markdown(index=False, floatfmt=floatfmt, missingval="")
