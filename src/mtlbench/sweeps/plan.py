"""From a sweep spec to runs: grid expansion, seeds, validation, and the selection rules of 000 section 3.

The protocol (Gama & Grassi, 000 section 3 and Appendix A.6):

* grid search over lr, dropout / weight decay and each method's own hyperparameters; every configuration
  is trained ``search_seeds`` times (five on Multi-MNIST, once elsewhere) with seeds 1, 2, ... (000's
  code: a base of 1 plus the run index);
* the configuration with the best mean validation Delta_m (the trainer's ``val_delta_m`` of the selected
  epoch) is trained again up to ``final_seeds`` seeds (ten on Multi-MNIST, three elsewhere); the test
  metrics of seeds 1..final_seeds are reported;
* single-task references are chosen the same way *per metric*: a grid per task, for each metric the
  configuration with the best mean validation value of that metric, then its final seeds; the stored
  reference is the mean of those final seeds (split by split, as :mod:`mtlbench.training.references`).

A configuration with a failed run (an exception, a NaN loss) or a non-finite score is left out of the
selection and counted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlbench.errors import MtlbenchError, UserInputError
from mtlbench.methods import get as get_method
from mtlbench.problems import PROBLEMS, create_problem
from mtlbench.problems.base import Metric, Problem
from mtlbench.store.results import config_hash
from mtlbench.sweeps.spec import GRID_KEYS, SweepSpec
from mtlbench.training.config import RunConfig

REFERENCE = "reference"
MULTI_TASK = "multi_task"
#: phases in launch order
PHASES = ("reference-search", "reference-final", "search", "final")


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Candidate:
    """One grid configuration of a group: the values that vary (lr, dropout, weight decay, method's own)."""

    index: int
    values: Mapping[str, Any]

    def label(self, keys: Iterable[str] | None = None) -> str:
        """``lr=0.001 c=0.5`` (only ``keys`` if given: e.g. the ones that vary within a group)."""
        shown = self.values if keys is None else {k: v for k, v in self.values.items() if k in set(keys)}
        return " ".join(f"{key}={_format(value)}" for key, value in shown.items()) or "(the only configuration)"


def varying_keys(candidates: Sequence[Candidate]) -> list[str]:
    """The grid keys that take more than one value among ``candidates``."""
    keys = list(candidates[0].values) if candidates else []
    return [k for k in keys if len({repr(c.values[k]) for c in candidates}) > 1]


@dataclass(frozen=True)
class Trial:
    """One run to train: a resolved configuration, its hash (the store's key) and where it belongs."""

    phase: str
    group: str
    candidate: Candidate
    seed: int
    config: RunConfig
    hash: str

    def describe(self) -> str:
        return f"{self.phase} {self.group} {self.candidate.label()} seed {self.seed}"


@dataclass
class Group:
    """The runs that share one selection: a method, or one task's single-task reference."""

    name: str
    kind: str
    candidates: list[Candidate]
    search_seeds: list[int]
    final_seeds: list[int]
    base: RunConfig
    task: str | None = None
    metrics: tuple[Metric, ...] = ()
    _trials: dict[tuple[int, int], Trial] = field(default_factory=dict, repr=False)
    _resolve: Any = field(default=None, repr=False)

    @property
    def search_phase(self) -> str:
        return "reference-search" if self.kind == REFERENCE else "search"

    @property
    def final_phase(self) -> str:
        return "reference-final" if self.kind == REFERENCE else "final"

    def trial(self, candidate: Candidate, seed: int, phase: str | None = None) -> Trial:
        key = (candidate.index, seed)
        if key not in self._trials:
            config = dataclasses.replace(self.base, seed=seed)
            values = dict(candidate.values)
            params = dict(config.method_params)
            for name in list(values):
                if name in GRID_KEYS:
                    setattr(config, name, values.pop(name))
            params.update(values)
            config.method_params = params
            resolved = self._resolve(config, f"{self.name} {candidate.label()}")
            self._trials[key] = Trial(
                phase or (self.search_phase if seed in self.search_seeds else self.final_phase),
                self.name,
                candidate,
                seed,
                resolved,
                config_hash(resolved.to_dict()),
            )
        trial = self._trials[key]
        return trial if phase is None or trial.phase == phase else dataclasses.replace(trial, phase=phase)

    def search_trials(self) -> list[Trial]:
        return [self.trial(c, seed, self.search_phase) for c in self.candidates for seed in self.search_seeds]

    def final_trials(self, candidate: Candidate) -> list[Trial]:
        """The runs of ``candidate`` still needed to reach the final seeds (beyond the search seeds)."""
        return [self.trial(candidate, s, self.final_phase) for s in self.final_seeds if s not in self.search_seeds]

    def reported_trials(self, candidate: Candidate) -> list[Trial]:
        """Seeds 1..final_seeds of ``candidate`` (the runs whose test metrics are reported)."""
        return [self.trial(candidate, seed) for seed in self.final_seeds]


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a grid, in key order then value order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _cpu_set() -> set[int]:
    import os

    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """Cores this process may use."""
    return len(_cpu_set())


class SweepPlan:
    """Every group and run of a sweep, all configurations validated (``RunConfig.resolved``) up front.

    ``threads`` is each run's torch thread count (part of its config); ``remote_device`` lets a CUDA device
    be named on a driver without one (Ray workers have it).
    """

    def __init__(self, spec: SweepSpec, *, threads: int, remote_device: bool = False) -> None:
        self.spec = spec
        self.threads = threads
        self.remote_device = remote_device
        try:
            problem_cls = PROBLEMS[spec.problem]
        except UserInputError as error:
            raise spec.error("problem", str(error)) from None
        try:
            self.problem: Problem = create_problem(spec.problem, spec.tasks, **spec.problem_options)
        except UserInputError as error:
            raise spec.error("problem_options" if "option" in str(error) else "tasks", str(error)) from None
        self.tasks = list(self.problem.task_names)
        self.reference_key = self.problem.reference_config()
        self.defaults = problem_cls.defaults
        settings = dict(spec.settings)
        settings.setdefault("threads", threads)
        self.threads = settings["threads"]
        base = RunConfig(problem=spec.problem, tasks=self.tasks, problem_options=dict(spec.problem_options), seed=1)
        for name, value in settings.items():
            setattr(base, name, value)
        self.base = base
        for method in spec.method_settings:
            try:
                get_method(method)
            except UserInputError as error:
                raise spec.error(f"method_settings.{method}", str(error)) from None
        self.reference_groups = self._reference_groups() if spec.references.enabled else []
        self.method_groups = [self._method_group(method) for method in spec.methods]
        for group in [*self.reference_groups, *self.method_groups]:
            group.search_trials()  # resolves (validates) every configuration before anything runs

    # ------------------------------------------------------------------------------- resolution
    def _resolve(self, config: RunConfig, where: str) -> RunConfig:
        try:
            requested = config.device
            if self.remote_device and requested.startswith("cuda") and not torch.cuda.is_available():
                resolved = dataclasses.replace(config, device="cpu").resolved()
                resolved.device = str(torch.device(requested))
                return resolved
            return config.resolved()
        except MtlbenchError as error:
            raise UserInputError(f"{self.spec.source}: {where}: {error}") from None
        except (TypeError, ValueError) as error:
            raise UserInputError(f"{self.spec.source}: {where}: invalid value ({error})") from None

    def _common_grid(self, override: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
        grid = {key: list(values) for key, values in self.defaults.grids.items() if key in GRID_KEYS}
        for key in self.spec.settings:
            if key in GRID_KEYS and key not in self.spec.grid:
                grid.pop(key, None)  # fixed in [settings]
        for key in self.spec.grid:
            if key in self.spec.settings:
                raise self.spec.error(f"grid.{key}", "also fixed in [settings]; set one of them")
        grid.update(self.spec.grid)
        grid.update(override)
        return {key: grid[key] for key in GRID_KEYS if key in grid}

    # ----------------------------------------------------------------------------------- groups
    def _seeds(self, search: int, final: int) -> tuple[list[int], list[int]]:
        return list(range(1, search + 1)), list(range(1, final + 1))

    def _method_group(self, method: str) -> Group:
        spec = self.spec
        try:
            method_cls = get_method(method)
        except UserInputError as error:
            raise spec.error("methods", str(error)) from None
        declared = [h.name for h in method_cls.hyperparameters]
        fixed = dict(spec.method_params.get(method, {}))
        for key in fixed:
            if key not in declared:
                allowed = ", ".join(declared) or "(none)"
                raise spec.error(
                    f"method_params.{method}.{key}", f"unknown hyperparameter of {method}; allowed: {allowed}"
                )
        override = spec.method_grids.get(method, {})
        for key in override:
            if key not in declared and key not in GRID_KEYS:
                allowed = ", ".join([*GRID_KEYS, *declared])
                raise spec.error(
                    f"method_grids.{method}.{key}", f"unknown hyperparameter of {method}; allowed: {allowed}"
                )
            if key in fixed:
                raise spec.error(f"method_grids.{method}.{key}", "also fixed in [method_params]; set one of them")
        own = {key: values for key, values in method_cls.grid(spec.grid_problem).items() if key not in fixed}
        own.update({key: values for key, values in override.items() if key not in GRID_KEYS})
        common = self._common_grid({key: values for key, values in override.items() if key in GRID_KEYS})
        grid = {**common, **own}
        base = dataclasses.replace(self.base, method=method, method_params=fixed, kind=MULTI_TASK)
        for name, value in spec.method_settings.get(method, {}).items():  # [method_settings.<method>]
            if name in GRID_KEYS:
                grid.pop(name, None)
            setattr(base, name, value)
        search, final = self._seeds(spec.search_seeds, spec.final_seeds)
        candidates = [Candidate(i, values) for i, values in enumerate(expand(grid))]
        return Group(method, MULTI_TASK, candidates, search, final, base, _resolve=self._resolve)

    def _reference_groups(self) -> list[Group]:
        refs = self.spec.references
        grid = self._common_grid(refs.grid)
        search, final = self._seeds(refs.search_seeds, refs.final_seeds)
        candidates = [Candidate(i, values) for i, values in enumerate(expand(grid))]
        groups = []
        for task in self.problem.tasks:
            base = dataclasses.replace(
                self.base, tasks=[task.name], method="unit_scal", method_params={}, kind=REFERENCE
            )
            groups.append(
                Group(
                    task.name,
                    REFERENCE,
                    candidates,
                    search,
                    final,
                    base,
                    task=task.name,
                    metrics=task.metrics,
                    _resolve=self._resolve,
                )
            )
        return groups

    @property
    def groups(self) -> list[Group]:
        return [*self.reference_groups, *self.method_groups]

    @property
    def needs_references(self) -> bool:
        """Whether some method's runs need the single-task references (:meth:`RunConfig.needs_reference`:
        a Delta_m selection rule); a sweep selecting otherwise runs without them."""
        return any(t.config.needs_reference() for g in self.method_groups for t in g.search_trials()[:1])

    def group(self, name: str, kind: str) -> Group:
        for group in self.groups:
            if group.name == name and group.kind == kind:
                return group
        raise KeyError(name)


# ------------------------------------------------------------------------------------ stored runs
@dataclass(frozen=True)
class StoredRun:
    """What selection needs of a stored run."""

    id: int
    status: str
    val_delta_m: float | None = None
    test_delta_m: float | None = None
    #: reference runs: task -> metric -> {"epoch", "val", "test"}
    selected: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None
    error: str | None = None
    #: the run's validation score by its selection rule (runs with a rule other than delta_m)
    val_score: float | None = None


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def lookup(store: Any, hashes: Iterable[str], chunk: int = 400) -> dict[str, StoredRun]:
    """The stored runs among ``hashes`` (config hash -> :class:`StoredRun`), in a few queries."""
    unique = list(dict.fromkeys(hashes))
    found: dict[str, StoredRun] = {}
    for start in range(0, len(unique), chunk):
        frame = store.runs(config_hash=unique[start : start + chunk])
        if not len(frame):
            continue
        prefix = "summary.selected."
        selected_columns = [c for c in frame.columns if c.startswith(prefix)]
        for row in frame.to_dict("records"):
            selected: dict[str, dict[str, dict[str, float]]] = {}
            # the run's tasks joined by "_" (names may contain "_", e.g. CelebA's 5_o_Clock_Shadow)
            own_tasks = f"_{row.get('tasks') or ''}_" if row["status"] == "completed" else ""
            for column in selected_columns:
                task, rest = column[len(prefix) :].split(".", 1)
                metric, _, part = rest.rpartition(".")
                if f"_{task}_" not in own_tasks or not metric:
                    continue
                value = row[column]
                if value is None:
                    continue
                selected.setdefault(task, {}).setdefault(metric, {})[part] = float(value)
            error = row.get("error")
            found[row["config_hash"]] = StoredRun(
                id=int(row["id"]),
                status=str(row["status"]),
                val_delta_m=_number(row.get("val_delta_m")),
                test_delta_m=_number(row.get("test_delta_m")),
                selected=selected or None,
                error=error if isinstance(error, str) else None,
                val_score=_number(row.get("summary.val_score")),
            )
    return found


def finished(run: StoredRun | None, retry_failed: bool = False) -> bool:
    """Whether a run needs no launch: completed, or failed (unless failed runs are retried)."""
    return run is not None and (run.status == "completed" or (run.status == "failed" and not retry_failed))


# --------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class CandidateScore:
    candidate: Candidate
    score: float | None
    values: tuple[float, ...]
    failed_runs: int
    missing_runs: int

    @property
    def failed(self) -> bool:
        return self.failed_runs > 0 or (self.missing_runs == 0 and self.score is None)


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection: the best candidate (None if every configuration failed)."""

    group: str
    metric: str | None
    best: Candidate | None
    score: float | None
    scores: tuple[CandidateScore, ...]
    higher_is_better: bool = True

    @property
    def failed_configs(self) -> int:
        return sum(1 for s in self.scores if s.failed)

    @property
    def failed_runs(self) -> int:
        return sum(s.failed_runs for s in self.scores)

    @property
    def incomplete(self) -> int:
        """Candidates with runs not finished yet (selection is final only when this is 0)."""
        return sum(1 for s in self.scores if s.missing_runs and not s.failed)


def _score(candidate: Candidate, runs: Sequence[StoredRun | None], value_of: Any) -> CandidateScore:
    failed = sum(1 for run in runs if run is not None and run.status == "failed")
    missing = sum(1 for run in runs if run is None or run.status not in ("completed", "failed"))
    values = []
    for run in runs:
        if run is not None and run.status == "completed":
            value = value_of(run)
            if value is None or not math.isfinite(value):
                failed += 1
            else:
                values.append(float(value))
    score = float(np.mean(values)) if values and not failed and not missing else None
    return CandidateScore(candidate, score, tuple(values), failed, missing)


def select(
    group: str,
    candidates: Sequence[Candidate],
    runs: Mapping[int, Sequence[StoredRun | None]],
    value_of: Any,
    *,
    higher_is_better: bool = True,
    metric: str | None = None,
) -> Selection:
    """The candidate with the best mean of ``value_of(run)`` over its search runs.

    A candidate with a failed run, a missing value or a non-finite one is ignored (and counted as failed);
    ties go to the earlier candidate in grid order.
    """
    scores = tuple(_score(c, runs.get(c.index, ()), value_of) for c in candidates)
    best: CandidateScore | None = None
    for entry in scores:
        if entry.score is None:
            continue
        if best is None or (entry.score > best.score if higher_is_better else entry.score < best.score):
            best = entry
    return Selection(
        group,
        metric,
        None if best is None else best.candidate,
        None if best is None else best.score,
        scores,
        higher_is_better,
    )


def select_method(group: Group, stored: Mapping[str, StoredRun]) -> Selection:
    """000: the configuration with the best mean validation Delta_m over the search seeds (with another
    ``selection`` rule, the best mean validation score by that rule: ``RunResult.val_score``)."""
    runs = {c.index: [stored.get(group.trial(c, s).hash) for s in group.search_seeds] for c in group.candidates}
    by_rule = group.base.selection != "delta_m"
    return select(group.name, group.candidates, runs, lambda run: run.val_score if by_rule else run.val_delta_m)


def select_reference(group: Group, stored: Mapping[str, StoredRun]) -> list[Selection]:
    """Per metric of the task: the configuration with the best mean validation value of that metric."""
    runs = {c.index: [stored.get(group.trial(c, s).hash) for s in group.search_seeds] for c in group.candidates}
    selections = []
    for metric in group.metrics:

        def value_of(run: StoredRun, name: str = metric.name) -> float | None:
            return ((run.selected or {}).get(group.task, {}).get(name) or {}).get("val")

        selections.append(
            select(
                group.name,
                group.candidates,
                runs,
                value_of,
                higher_is_better=metric.higher_is_better,
                metric=metric.name,
            )
        )
    return selections


def reference_values(
    group: Group, selections: Sequence[Selection], stored: Mapping[str, StoredRun]
) -> dict[str, dict[str, Any]]:
    """Metric -> {"val", "test", "n_seeds", "run_ids"}: the mean over the completed final seeds of the
    metric's selected configuration (metrics whose selection failed, or whose final runs all failed, are absent)."""
    values: dict[str, dict[str, Any]] = {}
    for selection in selections:
        if selection.best is None:
            continue
        picked = []
        for trial in group.reported_trials(selection.best):
            run = stored.get(trial.hash)
            entry = (run.selected or {}).get(group.task, {}).get(selection.metric) if run is not None else None
            if run is not None and run.status == "completed" and entry is not None:
                picked.append((run.id, entry))
        if not picked:
            continue
        values[selection.metric] = {
            "val": float(np.mean([entry["val"] for _, entry in picked])),
            "test": float(np.mean([entry["test"] for _, entry in picked])),
            "n_seeds": len(picked),
            "run_ids": [run_id for run_id, _ in picked],
            "candidate": selection.best,
        }
    return values


__all__ = [
    "MULTI_TASK",
    "PHASES",
    "REFERENCE",
    "Candidate",
    "CandidateScore",
    "Group",
    "Selection",
    "StoredRun",
    "SweepPlan",
    "Trial",
    "cpu_count",
    "expand",
    "finished",
    "lookup",
    "reference_values",
    "select",
    "select_method",
    "select_reference",
    "varying_keys",
]
