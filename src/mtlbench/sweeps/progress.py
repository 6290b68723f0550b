"""A live rich display of a sweep: runs done / failed / running, the ETA, and one line per selection.

Without a terminal (CI, a log file) it prints, instead of the live bar, at most one plain line every few
seconds (``MTLBENCH_PROGRESS_INTERVAL``, default 5) with the runs done, the last one finished and the ETA,
plus a line for every failed run and every selection.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mtlbench.progress import Clock, Throttle, duration, eta, is_live
from mtlbench.sweeps.executors import RunOutcome
from mtlbench.sweeps.plan import REFERENCE, Group, Selection, Trial, varying_keys
from mtlbench.sweeps.runner import SweepReporter
from mtlbench.training.selection import score_label

if TYPE_CHECKING:
    from mtlbench.sweeps.runner import Sweep


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    """``1.234%``, or ``-`` without a percent sign when there is no value."""
    text = _number(value)
    return text if text == "-" else f"{text}%"


class RichSweepReporter(SweepReporter):
    """Shows a sweep live on ``console`` (stderr by default)."""

    def __init__(
        self,
        console: Console | None = None,
        live: bool | None = None,
        *,
        clock: Clock = time.monotonic,
        interval_s: float | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.live = is_live() if live is None else live
        self.clock = clock
        self.throttle = Throttle(interval_s, clock)
        self._started = clock()
        self.total = self.done = self.failed = self.running = self.skipped = 0
        self._progress: Progress | None = None
        self._task = None

    def _print(self, text: str) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(text, highlight=False, soft_wrap=True)

    def begin(self, sweep: Sweep) -> None:
        spec, plan = sweep.spec, sweep.plan
        self._started = self.clock()
        self._print(
            f"sweep {spec.name} (scale {spec.scale}): {spec.problem} {'_'.join(plan.tasks)}, "
            f"{len(spec.methods)} method(s), seeds {spec.search_seeds} search / {spec.final_seeds} final"
        )
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("done {task.fields[done]} · failed {task.fields[failed]} · running {task.fields[running]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                speed_estimate_period=3600,
            )
            self._progress.start()
            self._task = self._progress.add_task("runs", total=0, done=0, failed=0, running=0)

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                total=self.total,
                completed=self.done + self.failed,
                done=self.done,
                failed=self.failed,
                running=self.running,
            )

    def stage(self, name: str) -> None:
        self._print(f"[bold]{name}[/bold]")

    def planned(self, phase: str, group: str, to_run: int, skipped: int) -> None:
        self.total += to_run
        self.skipped += skipped
        if skipped and not to_run:
            self._print(f"  {phase} {group}: all {skipped} run(s) already in the store")
        elif skipped:
            self._print(f"  {phase} {group}: {to_run} to run, {skipped} already in the store")
        self._refresh()

    def started(self, trial: Trial) -> None:
        self.running += 1
        self._refresh()

    def finished(self, trial: Trial, outcome: RunOutcome) -> None:
        self.running -= 1
        if outcome.status == "completed":
            self.done += 1
            finished = self.done + self.failed
            if not self.live and self.throttle.ready(force=finished == self.total):
                score = "" if trial.config.kind == "reference" else f", val Δm {_percent(outcome.val_delta_m)}"
                left = duration(eta(self.clock() - self._started, finished, self.total))
                self._print(
                    f"  [{finished}/{self.total}] runs: {self.done} completed, {self.failed} failed, "
                    f"{self.running} running, ETA {left}; last: {trial.describe()}: run {outcome.run_id}"
                    f"{score} ({outcome.seconds:.1f}s)"
                )
        else:
            self.failed += 1
            self._print(f"  [red]failed[/red] {trial.describe()} (run {outcome.run_id}): {outcome.error}")
        self._refresh()

    def selected(self, group: Group, selections: list[Selection]) -> None:
        for selection in selections:
            failed = f", {selection.failed_configs} of {len(selection.scores)} configs failed"
            failed = failed if selection.failed_configs else ""
            if selection.best is None:
                self._print(f"  [red]{group.name}: every configuration failed[/red]{failed}")
                continue
            if group.kind == REFERENCE:
                what = f"reference {group.name}/{selection.metric}: mean val {_number(selection.score, 4)}"
            else:
                rule = group.base.selection
                value = _percent(selection.score) if rule == "delta_m" else _number(selection.score, 4)
                what = f"{group.name}: mean {score_label(rule).removesuffix(' %')} {value}"
            self._print(f"  selected {what} with {selection.best.label(varying_keys(group.candidates))}{failed}")

    def note(self, text: str) -> None:
        self._print(f"  {text}")

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.console.print(
            f"runs: {self.done} completed, {self.failed} failed, {self.skipped} already in the store",
            highlight=False,
        )


__all__ = ["RichSweepReporter"]
