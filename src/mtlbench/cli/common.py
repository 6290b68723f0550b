"""Helpers shared by the CLI commands: key=value parsing, the results path, a live progress display."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mtlbench.errors import UserInputError

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


def results_path(path: Path | None) -> Path:
    from mtlbench.store.results import default_results_path

    return Path(path) if path is not None else default_results_path()


def checkpoint_root(results: Path) -> Path:
    return results.parent / "checkpoints"


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class EpochProgress:
    """A rich progress bar per run: steps within the epoch, then one line per finished epoch."""

    def __init__(self, title: str, enabled: bool | None = None) -> None:
        self.title = title
        self.enabled = sys.stderr.isatty() and not os.environ.get("CI") if enabled is None else enabled
        self._progress: Progress | None = None
        self._task = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "epoch_start" and self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            description = f"{self.title} epoch {event['epoch'] + 1}/{event['epochs']}"
            self._task = self._progress.add_task(description, total=event["steps"])
        elif kind == "step" and self._progress is not None:
            self._progress.update(self._task, completed=event["step"])
        elif kind == "epoch_end":
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            losses = " ".join(f"{k}={v:.4g}" for k, v in event["train_losses"].items())
            dm = event["val_delta_m"]
            console.print(
                f"{self.title} epoch {event['epoch'] + 1}/{event['epochs']}: loss {losses}"
                f" | val Δm {fmt(dm, 2)}% | {event['seconds']:.1f}s",
                highlight=False,
            )
