"""Running a sweep: references, search, selection, final seeds -- resumable, on any executor.

Stages run in order: the single-task references (per task: search, per-metric selection, final seeds,
then ``store.put_reference``), then the methods (per method: search, selection by mean validation Delta_m
or the spec's ``selection`` rule, final seeds). Only specs whose runs need Delta_m (a Delta_m selection
rule) require the references; the others run without them and report Delta_m only when ``[references]``
is enabled or the store has them. Within a stage a group's final runs start as soon as its own search is
over, so workers do not idle at phase boundaries. Every run already completed in the store (same resolved
config, seed included) is skipped; failed runs count as done unless ``retry_failed``. A killed sweep
therefore resumes where it stopped (its interrupted runs resume from their checkpoints) and a finished
one launches nothing; a run that another live process is training stops the sweep
(:class:`RunInProgressError`) rather than being trained twice. Selection always reads the store, the
single source of truth.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.errors import MissingDataError, UserInputError, unknown
from mtlbench.metrics import check_reference
from mtlbench.store.results import ResultsStore, RunInProgressError
from mtlbench.sweeps.executors import (
    EXECUTORS,
    Executor,
    InProcessExecutor,
    LocalExecutor,
    RayExecutor,
    RunOutcome,
    default_workers,
    require_ray,
)
from mtlbench.sweeps.plan import (
    PHASES,
    REFERENCE,
    Group,
    Selection,
    StoredRun,
    SweepPlan,
    Trial,
    cpu_count,
    finished,
    lookup,
    reference_values,
    select_method,
    select_reference,
)
from mtlbench.sweeps.spec import SweepSpec
from mtlbench.training.config import resolve_device


class SweepReporter:
    """Receives a sweep's events (the CLI shows them live); every hook is optional."""

    def begin(self, sweep: Sweep) -> None: ...

    def stage(self, name: str) -> None: ...

    def planned(self, phase: str, group: str, to_run: int, skipped: int) -> None: ...

    def started(self, trial: Trial) -> None: ...

    def finished(self, trial: Trial, outcome: RunOutcome) -> None: ...

    def selected(self, group: Group, selections: list[Selection]) -> None: ...

    def note(self, text: str) -> None: ...

    def end(self) -> None: ...


# -------------------------------------------------------------------------------------- reports
@dataclass
class PhaseCount:
    """Dry-run counts of one phase; ``pending_groups`` groups cannot be counted before their selection."""

    phase: str
    total: int = 0
    done: int = 0
    failed: int = 0
    resuming: int = 0
    elsewhere: int = 0
    to_run: int = 0
    pending_groups: int = 0
    pending_runs: int = 0

    def describe(self) -> str:
        text = f"{self.total} runs: {self.done} done, {self.failed} failed, {self.to_run} to run" + (
            f" ({self.resuming} resume)" if self.resuming else ""
        )
        if self.elsewhere:
            text += f", {self.elsewhere} running in another process"
        if self.pending_groups:
            text += (
                f"; plus up to {self.pending_runs} runs of {self.pending_groups} group(s) "
                "once their search is over and selected"
            )
        return text


@dataclass
class DryRun:
    """What :meth:`Sweep.run` would launch now: counts per phase and the runs that are known."""

    counts: list[PhaseCount]
    trials: list[Trial]
    notes: list[str] = field(default_factory=list)

    @property
    def to_run(self) -> int:
        return len(self.trials)


@dataclass
class ReferenceResult:
    task: str
    metric: str
    selection: Selection
    value: dict[str, Any] | None


@dataclass
class FinalRun:
    seed: int
    run: StoredRun | None
    test_metrics: dict[str, dict[str, float]]


@dataclass
class MethodResult:
    method: str
    selection: Selection
    final: list[FinalRun]
    #: the runs' selection rule: ``selection.score`` is the mean val Delta_m (``delta_m``) or the mean
    #: validation score by this rule (``RunResult.val_score``, higher is better)
    rule: str = "delta_m"

    def test_delta_m(self) -> list[float]:
        return [
            r.run.test_delta_m
            for r in self.final
            if r.run is not None
            and r.run.status == "completed"
            and r.run.test_delta_m is not None
            and math.isfinite(r.run.test_delta_m)
        ]


@dataclass
class SweepReport:
    """The sweep's results as stored: selections, references and every final seed's test metrics."""

    spec: SweepSpec
    references: list[ReferenceResult]
    methods: list[MethodResult]
    launched: int = 0
    launched_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        def selection(s: Selection) -> dict[str, Any]:
            return {
                "best": None if s.best is None else dict(s.best.values),
                "score": s.score,
                "configs": len(s.scores),
                "failed_configs": s.failed_configs,
                "failed_runs": s.failed_runs,
            }

        return {
            "spec": self.spec.name,
            "scale": self.spec.scale,
            "problem": self.spec.problem,
            "launched": self.launched,
            "launched_failed": self.launched_failed,
            "references": [
                {
                    "task": r.task,
                    "metric": r.metric,
                    "selection": selection(r.selection),
                    "value": None if r.value is None else {k: v for k, v in r.value.items() if k != "candidate"},
                }
                for r in self.references
            ],
            "methods": [
                {
                    "method": m.method,
                    "rule": m.rule,
                    "selection": selection(m.selection),
                    "test_delta_m_mean": float(np.mean(m.test_delta_m())) if m.test_delta_m() else None,
                    "final": [
                        {
                            "seed": f.seed,
                            "run_id": None if f.run is None else f.run.id,
                            "status": None if f.run is None else f.run.status,
                            "val_delta_m": None if f.run is None else f.run.val_delta_m,
                            "test_delta_m": None if f.run is None else f.run.test_delta_m,
                            "test_metrics": f.test_metrics,
                        }
                        for f in m.final
                    ],
                }
                for m in self.methods
            ],
        }


# --------------------------------------------------------------------------------------- the sweep
class Sweep:
    """One sweep spec against one results store.

    ``executor`` is 'local' (``workers`` processes, default: the cores divided by the threads per run, or
    1 on a GPU; one worker trains in this process) or 'ray' (``address`` of a cluster, else a local Ray
    instance), or an :class:`Executor` instance. ``threads`` (torch threads per run, part of each run's
    config, so a sweep resumes with the same value) defaults to the spec's ``settings.threads``, else the
    cores divided among the workers (Ray: ``ray.cpus_per_run`` or 1).
    """

    def __init__(
        self,
        spec: SweepSpec,
        store: ResultsStore,
        *,
        executor: str | Executor = "local",
        workers: int | None = None,
        address: str | None = None,
        threads: int | None = None,
        checkpoint_root: Path | str | None = None,
        retry_failed: bool = False,
        prune_checkpoints: bool = True,
        reporter: SweepReporter | None = None,
    ) -> None:
        kind = executor if isinstance(executor, str) else executor.name
        if kind not in EXECUTORS:
            raise unknown("executor", kind, EXECUTORS)
        if workers is not None and workers < 1:
            raise UserInputError(f"--workers={workers} must be >= 1")
        self.spec, self.store, self.kind = spec, store, kind
        self.address = address
        if kind == "ray" and not isinstance(executor, Executor):
            require_ray(address)  # before anything is printed or planned
        threads = threads or spec.settings.get("threads")
        if kind == "ray":
            threads = threads or spec.cpus_per_run or 1
        else:
            if workers is None:  # one run per core, or one at a time on a GPU
                on_gpu = resolve_device(str(spec.settings.get("device", "auto"))).type == "cuda"
                workers = 1 if on_gpu else default_workers(threads)
            threads = threads or max(1, cpu_count() // workers)
        self.workers = workers
        self.threads = int(threads)
        self.checkpoint_root = None if checkpoint_root is None else Path(checkpoint_root)
        self.retry_failed = retry_failed
        self.prune_checkpoints = prune_checkpoints
        self.reporter = reporter or SweepReporter()
        self._executor_arg = executor if isinstance(executor, Executor) else None
        self._executor: Executor | None = None
        self.plan = SweepPlan(spec, threads=self.threads, remote_device=kind == "ray")
        self.launched = 0
        self.launched_failed = 0
        self._launched_hashes: set[str] = set()

    # ---------------------------------------------------------------------------------- executor
    def make_executor(self) -> Executor:
        if self._executor_arg is not None:
            return self._executor_arg
        if self.kind == "ray":
            return RayExecutor(
                self.store,
                address=self.address,
                workers=self.workers,
                cpus_per_run=self.spec.cpus_per_run or self.threads,
                gpus_per_run=self.spec.gpus_per_run,
            )
        if self.workers == 1:
            return InProcessExecutor(self.store, self.checkpoint_root, self.prune_checkpoints)
        return LocalExecutor(self.store, self.workers or 1, self.checkpoint_root, self.prune_checkpoints)

    def _started_executor(self) -> Executor:
        if self._executor is None:
            executor = self.make_executor()
            executor.start(self.plan)
            self._executor = executor
            self.reporter.note(f"executor: {executor.describe()}; {self.threads} torch thread(s) per run")
        return self._executor

    # ----------------------------------------------------------------------------------- running
    def run(self) -> SweepReport:
        """Train everything still missing, in protocol order, and report the results from the store."""
        self.reporter.begin(self)
        aborted = True
        try:
            if self.plan.reference_groups:
                self.reporter.stage("references")
                self._stage(self.plan.reference_groups)
            if self.plan.method_groups:
                if self.plan.needs_references:
                    self._require_references()
                self._check_references()
                self.reporter.stage("methods")
                self._stage(self.plan.method_groups)
            aborted = False
        finally:
            if self._executor is not None:
                self._executor.close(abort=aborted)
                self._executor = None
            self.reporter.end()
        return self.report()

    def _todo(self, trials: list[Trial]) -> tuple[list[Trial], int]:
        stored = lookup(self.store, [t.hash for t in trials])
        todo = [t for t in trials if not finished(stored.get(t.hash), self.retry_failed)]
        busy = [  # running (not interrupted) and not launched by this sweep: another live process trains it
            stored[t.hash].id
            for t in todo
            if t.hash in stored and stored[t.hash].status == "running" and t.hash not in self._launched_hashes
        ]
        if busy:
            raise RunInProgressError(
                f"run(s) {', '.join(map(str, busy))} of this sweep are being trained by another process (see "
                "`mtlbench results --status running`); run the sweep again when it is done, or stop it: its runs "
                "then show as interrupted and resume here"
            )
        return todo, len(trials) - len(todo)

    def _stage(self, groups: list[Group]) -> None:
        queue: collections.deque[Trial] = collections.deque()
        remaining: dict[str, int] = {}
        phase: dict[str, str] = {}
        by_name = {group.name: group for group in groups}

        def advance(group: Group) -> None:
            while True:
                if phase[group.name] == "search":
                    phase[group.name] = "final"
                    selections = self._select(group)
                    self.reporter.selected(group, selections)
                    finals = list(
                        {t.hash: t for s in selections if s.best for t in group.final_trials(s.best)}.values()
                    )
                    todo, skipped = self._todo(finals)
                    self.reporter.planned(group.final_phase, group.name, len(todo), skipped)
                    if todo:
                        queue.extend(todo)
                        remaining[group.name] = len(todo)
                        return
                else:
                    phase[group.name] = "done"
                    self._group_done(group)
                    return

        for group in groups:
            phase[group.name] = "search"
            todo, skipped = self._todo(group.search_trials())
            self.reporter.planned(group.search_phase, group.name, len(todo), skipped)
            if todo:
                queue.extend(todo)
                remaining[group.name] = len(todo)
            else:
                advance(group)

        in_flight = 0
        while queue or in_flight:
            if queue:
                executor = self._started_executor()
                while queue and in_flight < executor.capacity:
                    trial = queue.popleft()
                    executor.submit(trial)
                    self._launched_hashes.add(trial.hash)
                    self.launched += 1
                    in_flight += 1
                    self.reporter.started(trial)
            for trial, outcome in self._executor.wait():
                in_flight -= 1
                self.launched_failed += outcome.status != "completed"
                self.reporter.finished(trial, outcome)
                remaining[trial.group] -= 1
                if remaining[trial.group] == 0:
                    advance(by_name[trial.group])

    def _select(self, group: Group) -> list[Selection]:
        stored = lookup(self.store, [t.hash for t in group.search_trials()])
        return select_reference(group, stored) if group.kind == REFERENCE else [select_method(group, stored)]

    def _group_done(self, group: Group) -> None:
        if group.kind != REFERENCE:
            return
        selections = self._select(group)
        trials = [t for s in selections if s.best for t in group.reported_trials(s.best)]
        values = reference_values(group, selections, lookup(self.store, [t.hash for t in trials]))
        with self.store.transaction():
            for metric, value in values.items():
                for split in ("val", "test"):
                    self.store.put_reference(
                        self.plan.reference_key,
                        split=split,
                        task=group.task,
                        metric=metric,
                        value=value[split],
                        n_seeds=value["n_seeds"],
                        run_ids=value["run_ids"],
                    )
        missing = [m.name for m in group.metrics if m.name not in values]
        if missing:
            self.reporter.note(f"reference {group.task}: no usable run for metric(s) {', '.join(missing)}")

    def _require_references(self) -> None:
        """Multi-task runs selected by a Delta_m rule need every task's reference (val and test) with every
        metric (a sweep whose runs select otherwise needs none: :attr:`SweepPlan.needs_references`)."""
        key, problem = self.plan.reference_key, self.plan.problem
        for split in ("val", "test"):
            found = self.store.reference(key, self.plan.tasks, split) or {}
            for task in problem.tasks:
                missing = [m.name for m in task.metrics if m.name not in found.get(task.name, {})]
                if missing:
                    how = (
                        "every reference configuration failed; see `mtlbench results --kind reference`"
                        if self.plan.reference_groups
                        else "enable [references] in the sweep file or run `mtlbench reference`"
                    )
                    raise MissingDataError(
                        f"{self.spec.source}: no single-task reference for {task.name} "
                        f"({', '.join(missing)}, {split}) of {problem.name} {problem.reference_config()}: {how}"
                    )

    def _check_references(self) -> None:
        """A stored reference metric of exactly 0 (Delta_m undefined) stops the sweep before any multi-task
        run (each would fail after training started)."""
        for split in ("val", "test"):
            found = self.store.reference(self.plan.reference_key, self.plan.tasks, split)
            if found is not None:
                check_reference(found, f"{self.spec.source}: {self.plan.problem.name} ({split})")

    # ----------------------------------------------------------------------------------- dry run
    def dry_run(self) -> DryRun:
        """The runs :meth:`run` would launch now and the count per phase (final phases: what is known)."""
        counts = {phase: PhaseCount(phase) for phase in PHASES}
        launch: list[Trial] = []
        notes: list[str] = []
        for group in self.plan.groups:
            search = group.search_trials()
            stored = lookup(self.store, [t.hash for t in search])
            self._count(counts[group.search_phase], search, stored, launch)
            extra = len([s for s in group.final_seeds if s not in group.search_seeds])
            if any(not finished(stored.get(t.hash), self.retry_failed) for t in search):
                metrics = max(1, len(group.metrics))
                counts[group.final_phase].pending_groups += 1
                counts[group.final_phase].pending_runs += extra * metrics
                continue
            selections = self._select(group)
            for selection in selections:
                if selection.best is None:
                    notes.append(f"{group.name}: every configuration failed; no final runs")
            finals = list({t.hash: t for s in selections if s.best for t in group.final_trials(s.best)}.values())
            self._count(counts[group.final_phase], finals, lookup(self.store, [t.hash for t in finals]), launch)
        if self.plan.method_groups and not self.plan.reference_groups and self.plan.needs_references:
            try:
                self._require_references()
            except MissingDataError as error:
                notes.append(str(error))
        if self.plan.method_groups:
            try:
                self._check_references()
            except UserInputError as error:
                notes.append(str(error))
        return DryRun([counts[p] for p in PHASES if counts[p].total or counts[p].pending_groups], launch, notes)

    def _count(self, count: PhaseCount, trials: list[Trial], stored: dict[str, StoredRun], launch: list) -> None:
        for trial in trials:
            run = stored.get(trial.hash)
            count.total += 1
            if run is not None and run.status == "completed":
                count.done += 1
            elif run is not None and run.status == "failed" and not self.retry_failed:
                count.failed += 1
            elif run is not None and run.status == "running":  # live in another process: not launched from here
                count.elsewhere += 1
            else:
                count.to_run += 1
                count.resuming += run is not None and run.status == "interrupted"
                launch.append(trial)

    # ------------------------------------------------------------------------------------ report
    def report(self) -> SweepReport:
        """Selections, references and final runs as the store has them now."""
        references = []
        for group in self.plan.reference_groups:
            selections = self._select(group)
            trials = [t for s in selections if s.best for t in group.reported_trials(s.best)]
            values = reference_values(group, selections, lookup(self.store, [t.hash for t in trials]))
            for selection in selections:
                references.append(
                    ReferenceResult(group.name, selection.metric, selection, values.get(selection.metric))
                )
        methods = []
        for group in self.plan.method_groups:
            selection = self._select(group)[0]
            final: list[FinalRun] = []
            if selection.best is not None:
                trials = group.reported_trials(selection.best)
                stored = lookup(self.store, [t.hash for t in trials])
                metrics = self._test_metrics([t.hash for t in trials])
                for trial in trials:
                    run = stored.get(trial.hash)
                    final.append(FinalRun(trial.seed, run, metrics.get(run.id, {}) if run else {}))
            methods.append(MethodResult(group.name, selection, final, group.base.selection))
        return SweepReport(self.spec, references, methods, self.launched, self.launched_failed)

    def _test_metrics(self, hashes: list[str]) -> dict[int, dict[str, dict[str, float]]]:
        frame = self.store.test_metrics(config_hash=hashes)
        found: dict[int, dict[str, dict[str, float]]] = {}
        for row in frame.itertuples(index=False):
            found.setdefault(int(row.run_id), {}).setdefault(row.task, {})[row.metric] = float(row.value)
        return found


__all__ = [
    "DryRun",
    "FinalRun",
    "MethodResult",
    "PhaseCount",
    "ReferenceResult",
    "Sweep",
    "SweepReport",
    "SweepReporter",
]
