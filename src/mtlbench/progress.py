"""Progress of long work: a live rich bar on a terminal; in a log, at most one plain line every few seconds.

On a pipe or a file a live bar prints nothing until it ends (or a line per refresh), so off a terminal
the work reports itself as plain lines with the count done, the elapsed time and an ETA, at most once
every :func:`interval` seconds (``MTLBENCH_PROGRESS_INTERVAL``, default 5), plus a closing line.
Every class takes a ``clock`` (seconds, monotonic) so that tests can drive the cadence.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

Clock = Callable[[], float]
DEFAULT_INTERVAL = 5.0
INTERVAL_VARIABLE = "MTLBENCH_PROGRESS_INTERVAL"


def interval() -> float:
    """Seconds between two plain progress lines: ``$MTLBENCH_PROGRESS_INTERVAL`` or 5."""
    try:
        value = float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def is_live(stream: IO[str] | None = None) -> bool:
    """Whether a live display suits ``stream`` (stderr by default): a terminal, and not CI."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty() and not os.environ.get("CI"))


def duration(seconds: float | None) -> str:
    """``0:04:05``-style text; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def eta(elapsed: float, done: float, total: float) -> float | None:
    """Seconds left at the rate so far (``None`` before any work is done)."""
    if done <= 0 or total <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


class Throttle:
    """Says yes at most once every ``interval`` seconds of ``clock`` (the first ask is a yes)."""

    def __init__(self, interval_s: float | None = None, clock: Clock = time.monotonic) -> None:
        self.interval = interval() if interval_s is None else interval_s
        self.clock = clock
        self._last: float | None = None

    def ready(self, *, force: bool = False) -> bool:
        now = self.clock()
        if force or self._last is None or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class PlainProgress:
    """``label: 300/1,000 molecules (30%), 0:00:12 elapsed, ETA 0:00:28`` at most once per interval.

    ``completed`` counts work done before this session (a resumed job); the rate and the ETA use only
    the work done since.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        completed: int = 0,
        interval_s: float | None = None,
        clock: Clock = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.completed = self._start_count = completed
        self.clock = clock
        self.throttle = Throttle(interval_s, clock)
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self._started = clock()
        self._closed = False
        self._report()

    def _count(self) -> str:
        percent = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.completed:,}/{self.total:,}{unit}{percent}"

    def _report(self, *, force: bool = False) -> None:
        if not self.throttle.ready(force=force):
            return
        elapsed = self.clock() - self._started
        left = eta(elapsed, self.completed - self._start_count, self.total - self._start_count)
        self._write(f"{self.label}: {self._count()}, {duration(elapsed)} elapsed, ETA {duration(left)}")

    def advance(self, amount: int = 1) -> None:
        self.update(self.completed + amount)

    def update(self, completed: int) -> None:
        self.completed = completed
        if self.completed < self.total:
            self._report()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        elapsed = self.clock() - self._started
        self._write(f"{self.label}: {self._count()} in {duration(elapsed)}")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LiveProgress:
    """The same interface as :class:`PlainProgress`, drawn as a rich bar (on stderr)."""

    def __init__(self, label: str, total: int, *, unit: str = "", completed: int = 0, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.completed = completed
        self._progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=completed)

    def advance(self, amount: int = 1) -> None:
        self.update(self.completed + amount)

    def update(self, completed: int) -> None:
        self.completed = completed
        self._progress.update(self._task, completed=completed)

    def close(self) -> None:
        self._progress.stop()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NoProgress:
    """Reports nothing (``progress=False``)."""

    completed = 0

    def advance(self, amount: int = 1) -> None:
        self.completed += amount

    def update(self, completed: int) -> None:
        self.completed = completed

    def close(self) -> None:
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def task_progress(
    label: str,
    total: int,
    *,
    unit: str = "",
    completed: int = 0,
    enabled: bool = True,
    live: bool | None = None,
) -> PlainProgress | LiveProgress | NoProgress:
    """The progress display for one job: live on a terminal (or ``live=True``), plain lines otherwise."""
    if not enabled:
        return NoProgress()
    if is_live() if live is None else live:
        return LiveProgress(label, total, unit=unit, completed=completed)
    return PlainProgress(label, total, unit=unit, completed=completed)


__all__ = [
    "LiveProgress",
    "NoProgress",
    "PlainProgress",
    "Throttle",
    "duration",
    "eta",
    "interval",
    "is_live",
    "task_progress",
]
