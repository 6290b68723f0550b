"""The runs of one problem configuration, read from the results store, and the final runs per method.

Protocol (000 section 3 and Gama's ``eval_multi_task.py``): runs that differ only in their seed (and
machine: device, threads; and whether gradient diagnostics were recorded) form a *setting*; per method
the setting with the best mean validation Delta_m over the seeds every setting has (000: the first 5
runs) is selected, and all its runs ("final seeds", 000: 10) are compared on test
(:meth:`ProblemRuns.final_runs`). Test Delta_m is recomputed against the stored single-task test
reference (the reference may have gained seeds since the run finished).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtlbench.analysis.fixed_weights import setting_key
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.metrics import delta_m, relative_changes
from mtlbench.problems import create_problem
from mtlbench.problems.base import Problem

Metrics = dict[str, dict[str, float]]


def method_title(method: str) -> str:
    """The method's display name (``Unit. Scal.``), or its registry name if it is not registered."""
    from mtlbench.methods import METHODS

    try:
        return str(METHODS[method].title)
    except Exception:
        return method


@dataclass
class RunInfo:
    """One stored multi-task run of the problem configuration."""

    id: int
    method: str
    seed: int
    status: str
    config: dict[str, Any]
    setting: str
    test_metrics: Metrics
    val_delta_m: float
    test_delta_m: float
    epochs: list[dict[str, Any]]
    error: str | None = None
    changes: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def params_label(self) -> str:
        params = self.config.get("method_params") or {}
        shown = ",".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
        return f"{method_title(self.method)}({shown})" if shown else method_title(self.method)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass
class ProblemRuns:
    """Every stored multi-task run of one problem configuration (completed and failed)."""

    problem: Problem
    runs: list[RunInfo]
    failed: list[RunInfo]
    reference: Metrics | None
    directions: dict[str, dict[str, bool]]
    notes: list[str] = field(default_factory=list)

    @property
    def tasks_key(self) -> str:
        return "_".join(self.problem.task_names)

    def methods(self) -> list[str]:
        return list(dict.fromkeys(run.method for run in self.runs))

    def final_runs(self) -> dict[str, list[RunInfo]]:
        """Per method, the runs of its selected setting, one per seed, Unit. Scal. first.

        Selection as 000 and ``mtlbench sweep``: settings with a failed run are left out (unless every setting
        has one); each remaining setting is scored by the mean validation Delta_m of its k lowest seeds, k the
        fewest seeds any of them has (the search seeds, so that a setting already trained on its final seeds
        is not favoured); the best setting's runs are all reported. A rerun of a seed (with gradient
        diagnostics, on another device) is not another seed: the first stored run counts.
        """
        failed_settings = {run.setting for run in self.failed}
        by_method: dict[str, dict[str, list[RunInfo]]] = {}
        seen: set[tuple[str, int]] = set()
        for run in sorted(self.runs, key=lambda r: r.id):
            if (run.setting, run.seed) in seen:
                continue
            seen.add((run.setting, run.seed))
            by_method.setdefault(run.method, {}).setdefault(run.setting, []).append(run)
        chosen: dict[str, list[RunInfo]] = {}
        for method, settings in by_method.items():
            candidates = [runs for key, runs in settings.items() if key not in failed_settings]
            candidates = candidates or list(settings.values())
            k = min(len(runs) for runs in candidates)
            chosen[method] = max(candidates, key=lambda runs: _setting_score(runs, k))
        order = sorted(chosen, key=lambda m: (m != "unit_scal", method_title(m).lower()))
        return {method: sorted(chosen[method], key=lambda r: (r.seed, r.id)) for method in order}


def _setting_score(runs: list[RunInfo], k: int) -> tuple[float, int, int]:
    first = sorted(runs, key=lambda r: (r.seed, r.id))[:k]
    values = [r.val_delta_m for r in first if math.isfinite(r.val_delta_m)]
    score = float(np.mean(values)) if len(values) == len(first) else -math.inf  # a non-finite score: not selected
    return (score, len(runs), -min(r.id for r in runs))


def problem_args(problem: Problem) -> str:
    """``--problem P --tasks T`` plus ``--option k=v`` for each option that differs from its default."""
    defaults = {option.name: option.default for option in problem.options}
    options = "".join(f" --option {k}={v}" for k, v in problem.option_values.items() if v != defaults.get(k, v))
    return f"--problem {problem.name} --tasks {'_'.join(problem.task_names)}{options}"


def directions_of(problem: Problem) -> dict[str, dict[str, bool]]:
    return {task.name: {m.name: m.higher_is_better for m in task.metrics} for task in problem.tasks}


def _float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def store_overview(store: Any) -> str:
    """What the store holds, one line per (problem, tasks): run counts by kind and status."""
    frame = store.runs()
    if not len(frame):
        return f"the store {store.path} holds no runs"
    counts = frame.groupby(["problem", "tasks", "kind", "status"]).size()
    lines = [f"{p} {t} ({k}, {s}): {n}" for (p, t, k, s), n in counts.items()]
    return "the store holds: " + "; ".join(lines)


def resolve_problem(
    store: Any, problem: str, tasks: str, options: dict[str, Any] | None = None
) -> tuple[Problem, list[str]]:
    """The problem configuration to analyse, with notes. Without ``options``: the configuration of
    ``problem``/``tasks`` with the most stored multi-task runs (the others are named in the notes)."""
    base = create_problem(problem, tasks, **(options or {}))  # one-line errors for unknown names
    runs = store.runs(problem=problem, tasks=base.task_names, kind="multi_task")
    if not len(runs):
        raise MissingDataError(
            f"no multi-task runs of {problem} {'_'.join(base.task_names)} in {store.path}; {store_overview(store)}"
        )
    if options:
        return base, []
    configurations: dict[str, tuple[dict[str, Any], int]] = {}
    prefix = "config.problem_options."
    columns = [c for c in runs.columns if c.startswith(prefix)]
    for _, row in runs.iterrows():
        given = {c[len(prefix) :]: _plain(row[c]) for c in columns if not _missing(row[c])}
        try:
            values = create_problem(problem, base.task_names, **given).option_values
        except UserInputError:
            continue
        key = json.dumps(values, sort_keys=True, default=str)
        previous = configurations.get(key, (values, 0))
        configurations[key] = (values, previous[1] + 1)
    ranked = sorted(configurations.values(), key=lambda item: -item[1])
    chosen = ranked[0][0]
    notes = []
    if len(ranked) > 1:
        others = "; ".join(f"{_options_text(values)} ({n} runs)" for values, n in ranked[1:])
        notes.append(f"analysed the configuration {_options_text(chosen)}; the store also has: {others}")
    return create_problem(problem, base.task_names, **chosen), notes


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; integral floats (a column with gaps is float) -> int."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _options_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "default options"


def load_problem_runs(store: Any, problem: Problem) -> ProblemRuns:
    """Every stored multi-task run of ``problem``'s configuration (tasks and option values)."""
    frame = store.runs(problem=problem.name, tasks=problem.task_names, kind="multi_task")
    reference = store.reference(problem.reference_config(), problem.task_names, "test")
    directions = directions_of(problem)
    completed: list[RunInfo] = []
    failed: list[RunInfo] = []
    cache: dict[str, dict[str, Any]] = {}
    for run_id in frame["id"] if len(frame) else []:
        run = store.run(int(run_id))
        config = run["config"]
        options_key = json.dumps(config.get("problem_options") or {}, sort_keys=True, default=str)
        if options_key not in cache:
            try:
                cache[options_key] = create_problem(
                    problem.name, problem.task_names, **(config.get("problem_options") or {})
                ).option_values
            except UserInputError:
                cache[options_key] = {}
        if cache[options_key] != problem.option_values:
            continue
        info = RunInfo(
            id=int(run_id),
            method=str(config["method"]),
            seed=int(config.get("seed", 0)),
            status=str(run["status"]),
            config=config,
            setting=setting_key(config),
            test_metrics=run["test_metrics"],
            val_delta_m=_float(run.get("val_delta_m")),
            test_delta_m=_float(run.get("test_delta_m")),
            epochs=run["epochs"],
            error=run.get("error"),
        )
        if info.status == "failed":
            failed.append(info)
            continue
        if info.status != "completed":
            continue
        if reference is not None and _complete(info.test_metrics, directions):
            info.changes = relative_changes(
                {t: {m: info.test_metrics[t][m] for m in directions[t]} for t in directions}, reference, directions
            )
            info.test_delta_m = delta_m(
                {t: {m: info.test_metrics[t][m] for m in directions[t]} for t in directions}, reference, directions
            )
        completed.append(info)
    notes = []
    if reference is None:
        notes.append(
            f"no single-task test reference for {problem.name} {'_'.join(problem.task_names)}: Δm analyses are "
            f"skipped (`mtlbench reference {problem_args(problem)}`)"
        )
    return ProblemRuns(problem, completed, failed, reference, directions, notes)


def _complete(metrics: Metrics, directions: dict[str, dict[str, bool]]) -> bool:
    return all(task in metrics and all(m in metrics[task] for m in ms) for task, ms in directions.items())


__all__ = [
    "ProblemRuns",
    "RunInfo",
    "directions_of",
    "load_problem_runs",
    "method_title",
    "problem_args",
    "resolve_problem",
    "store_overview",
]
