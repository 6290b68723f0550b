"""Helpers shared by the CLI commands: key=value parsing, the results path, tables, the progress of a run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mtlbench.errors import UserInputError
from mtlbench.progress import Clock, Throttle, duration, eta, is_live

console = Console(stderr=True)


def parse_assignments(items: Iterable[str] | None, what: str) -> dict[str, str]:
    """``["c=0.4", "normalize=l2"]`` -> ``{"c": "0.4", "normalize": "l2"}`` (values validated later)."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"{what} {item!r} is not of the form name=value")
        result[key.strip()] = value.strip()
    return result


def coerce_option(value: str) -> Any:
    """Problem option values from the CLI: ints, floats, booleans, 'none', else text."""
    lowered = value.lower()
    if lowered in {"none", "null"}:
        return None
    if lowered in {"true", "false"}:
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def results_path(path: Path | None, *, option: str = "--results") -> Path:
    """The results database (default: ``$MTLBENCH_RESULTS`` or ``./mtlbench-results/results.db``)."""
    from mtlbench.store.results import default_results_path

    return writable_path(Path(path), option) if path is not None else default_results_path()


def writable_path(path: Path, option: str, *, folder: bool = False) -> Path:
    """``path`` if it can be created or written: a one-line error when a parent is a file, the nearest
    existing folder is not writable, or ``path`` is a folder where a file is wanted (or the reverse)."""
    if path.exists():
        if folder and not path.is_dir():
            raise UserInputError(f"{option} {path} is a file; give a folder")
        if not folder and path.is_dir():
            raise UserInputError(f"{option} {path} is a folder; give a file path, e.g. {path / 'results.db'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserInputError(f"{option} {path}: the folder {parent} is not writable")
            break
    return path


def checkpoint_root(results: Path) -> Path:
    return results.parent / "checkpoints"


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 2) -> str:
    """``1.23%``, or ``-`` (no percent sign) when there is no value (a reference run has no Δm)."""
    return "-" if value is None else f"{value:.{digits}f}%"


def print_table(table: Any, out: Console | None = None) -> None:
    """Print a rich table; off a terminal at its natural width, so that no cell is cut or wrapped."""
    out = out or Console()
    if out.is_terminal:
        out.print(table)
        return
    from rich.measure import Measurement

    width = Measurement.get(out, out.options.update_width(100_000), table).maximum
    Console(file=out.file, width=max(width, 20), color_system=None, highlight=False).print(table)


class EpochProgress:
    """Progress of one run: on a terminal a rich bar per epoch and a line per finished epoch; in a log
    (``enabled=False``) at most one plain line per interval (steps or epochs done, ETA of the run), plus the
    last epoch's line."""

    def __init__(
        self,
        title: str,
        enabled: bool | None = None,
        *,
        clock: Clock = time.monotonic,
        interval_s: float | None = None,
        out: Console | None = None,
    ) -> None:
        self.title = title
        self.enabled = is_live() if enabled is None else enabled
        self.clock = clock
        self.throttle = Throttle(interval_s, clock)
        self.out = out
        self._progress: Progress | None = None
        self._task = None
        self._started: float | None = None
        self._first_epoch = 0
        self._epoch, self._epochs = -1, 0
        self._steps = 0

    def _print(self, text: str) -> None:
        (self.out or console).print(text, highlight=False, soft_wrap=True)

    def _eta(self, epoch: int, epochs: int, step: int) -> str:
        """ETA of the run from the steps done in this process (a resumed run starts at its epoch)."""
        assert self._started is not None
        per_epoch = max(self._steps, 1)
        done = (epoch - self._first_epoch) * per_epoch + step
        total = (epochs - self._first_epoch) * per_epoch
        return duration(eta(self.clock() - self._started, done, total))

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "epoch_start":
            self._steps = event["steps"]
            if self._started is None or event["epoch"] <= self._epoch:  # a run starts (references: one per task)
                self._started, self._first_epoch = self.clock(), event["epoch"]
            if self.enabled:
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=self.out or console,
                    transient=True,
                )
                self._progress.start()
                description = f"{self.title} epoch {event['epoch'] + 1}/{event['epochs']}"
                self._task = self._progress.add_task(description, total=event["steps"])
            self._epoch, self._epochs = event["epoch"], event["epochs"]
        elif kind == "step":
            if self._progress is not None:
                self._progress.update(self._task, completed=event["step"])
            elif not self.enabled and self._started is not None and self.throttle.ready():
                self._print(
                    f"{self.title} epoch {self._epoch + 1}/{self._epochs} step {event['step']}/{self._steps}, "
                    f"ETA {self._eta(self._epoch, self._epochs, event['step'])}"
                )
        elif kind == "epoch_end":
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            last = event["epoch"] + 1 == event["epochs"]
            if not (self.enabled or self.throttle.ready(force=last)):
                return
            if self._started is None:  # an epoch_end without its start: no ETA to give
                self._started, self._first_epoch = self.clock(), event["epoch"]
            losses = " ".join(f"{k}={v:.4g}" for k, v in event["train_losses"].items())
            left = "" if last else f" | ETA {self._eta(event['epoch'] + 1, event['epochs'], 0)}"
            self._print(
                f"{self.title} epoch {event['epoch'] + 1}/{event['epochs']}: loss {losses}"
                f" | val Δm {pct(event['val_delta_m'])} | {event['seconds']:.1f}s{left}"
            )
