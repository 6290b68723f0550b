"""The seam of a study: one paper's table or figure as one command, the published values beside ours.

A :class:`Study` declares its paper, the tables and figures it reproduces, the problems it needs, its
scales (``test`` -- seconds, for the test suite; ``smoke`` -- minutes; ``cpu`` -- hours on a laptop;
``paper`` -- the paper's protocol), its :class:`Cell`\\ s (each with a :class:`Published` value or an
explicit "no published number") and its :class:`Claim`\\ s. :meth:`Study.execute` trains what the
scale needs (through the sweep machinery: resumable, stored runs are skipped) and returns a
:class:`StudyOutcome`: our value of every cell with seeds, CI and scale, and a verdict per claim
(:mod:`mtlbench.analysis.claims`). :func:`write_outcome` writes it as Markdown, JSON and HTML.

This module imports neither torch nor pandas: ``mtlbench study --list`` stays fast.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mtlbench.errors import UserInputError

SCALES = ("test", "smoke", "cpu", "paper")
DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class Published:
    """A number the paper prints (``value``), or ``None`` where the cell is drawn only in a figure.

    ``source`` names the table/figure/section; ``direction`` says whether higher or lower is better *in the
    paper's own convention*, ``aggregation`` how it was aggregated (e.g. "mean of 10 seeds"), ``units`` its
    units. ``to_ours`` converts it to mtlbench's convention for display (e.g. -1 for a Delta_m that the paper
    reports with lower = better); our own sign never flips.
    """

    value: float | None
    source: str
    direction: str = "higher"
    aggregation: str = ""
    units: str = ""
    to_ours: float = 1.0
    note: str = ""
    #: a printed entry that is not a number (e.g. 001's '-' for "not within 100k iterations")
    text: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r}; choose one of: {', '.join(DIRECTIONS)}")

    @property
    def converted(self) -> float | None:
        return None if self.value is None else self.value * self.to_ours

    def describe(self) -> str:
        if self.value is None and self.text:
            return f"{self.text} ({self.source}: {self.note})" if self.note else f"{self.text} ({self.source})"
        if self.value is None:
            return f"no published number ({self.source})"
        parts = [f"{self.value:g}"]
        if self.units:
            parts.append(self.units)
        meta = ", ".join(p for p in (self.source, f"{self.direction} is better", self.aggregation) if p)
        return f"{' '.join(parts)} ({meta})"


def no_number(source: str, note: str = "") -> Published:
    """A cell that the paper draws only in a figure: a qualitative check, no number to compare."""
    return Published(None, source, note=note or "drawn in a figure; no number printed")


@dataclass(frozen=True)
class Cell:
    """One cell of a paper's table or figure: its key in the study, a label, and the published value."""

    key: str
    label: str
    published: Published
    direction: str = "higher"  # of *our* value
    units: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim of the paper that the study checks: a difference, no difference, or a qualitative shape."""

    key: str
    text: str
    source: str
    kind: str = "difference"  # difference | no_difference | qualitative
    margin: str = ""  # the stated equivalence margin or minimal effect, in words


@dataclass(frozen=True)
class ScaleInfo:
    """What a scale runs: a description, the number of training runs and the estimated hours."""

    description: str
    runs: int
    cpu_hours: float
    gpu_hours: float | None = None


@dataclass
class CellResult:
    cell: Cell
    ours: float | None
    ci: tuple[float, float] | None = None
    n: int = 0
    note: str = ""


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    detail: str


@dataclass
class StudyOutcome:
    """What a study found at one scale."""

    study: str
    paper: str
    targets: str
    scale: str
    cells: list[CellResult] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)  # title -> Markdown

    def put(self, result: CellResult) -> None:
        """Add a cell's result, replacing an earlier one of the same cell (e.g. a "not run" placeholder)."""
        self.cells = [c for c in self.cells if c.cell.key != result.cell.key]
        self.cells.append(result)

    def cell(self, key: str) -> CellResult:
        for result in self.cells:
            if result.cell.key == key:
                return result
        raise KeyError(key)

    def claim(self, key: str) -> ClaimResult:
        for result in self.claims:
            if result.claim.key == key:
                return result
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        def number(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else value

        return {
            "study": self.study,
            "paper": self.paper,
            "targets": self.targets,
            "scale": self.scale,
            "cells": [
                {
                    "key": r.cell.key,
                    "label": r.cell.label,
                    "ours": number(r.ours),
                    "ci": None if r.ci is None else [number(r.ci[0]), number(r.ci[1])],
                    "n": r.n,
                    "note": r.note,
                    "published": {
                        "value": r.cell.published.value,
                        "in_our_convention": r.cell.published.converted,
                        "source": r.cell.published.source,
                        "direction": r.cell.published.direction,
                        "aggregation": r.cell.published.aggregation,
                        "units": r.cell.published.units,
                        "note": r.cell.published.note,
                        "text": r.cell.published.text,
                    },
                }
                for r in self.cells
            ],
            "claims": [
                {
                    "key": r.claim.key,
                    "text": r.claim.text,
                    "source": r.claim.source,
                    "kind": r.claim.kind,
                    "verdict": r.verdict,
                    "detail": r.detail,
                }
                for r in self.claims
            ],
            "notes": self.notes,
            "figures": self.figures,
        }


@dataclass
class StudyContext:
    """Where and how a study runs: the results store path, output folder, executor settings, progress."""

    scale: str
    results: Path
    out: Path
    executor: str = "local"
    workers: int | None = None
    address: str | None = None
    threads: int | None = None
    progress: bool | None = False
    log: Any = None  # callable(str) for one-line notes

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


class Study:
    """Base class: subclasses set the class attributes and implement :meth:`execute`."""

    name: str = ""
    paper: str = ""  # "000", "001", ...
    title: str = ""
    targets: str = ""  # "Fig. 1, Table 3"
    problems: tuple[str, ...] = ()
    description: str = ""
    #: scale -> what it runs; every study has all of SCALES
    scales: ClassVar[Mapping[str, ScaleInfo]] = {}

    def cells(self) -> list[Cell]:
        return []

    def claims(self) -> list[Claim]:
        return []

    def execute(self, context: StudyContext) -> StudyOutcome:
        raise NotImplementedError

    # helpers for subclasses -----------------------------------------------------------------------
    def outcome(self, scale: str) -> StudyOutcome:
        return StudyOutcome(self.name, self.paper, self.targets, scale)

    def check_scale(self, scale: str) -> None:
        if scale not in self.scales:
            raise UserInputError(
                f"scale {scale!r} is not defined for {self.name}; choose one of: {', '.join(self.scales)}"
            )


def cell_value(values: Sequence[float], *, seed: int = 0) -> tuple[float | None, tuple[float, float] | None, int]:
    """Mean, bootstrap 95% CI (None with fewer than 2 values) and count of the finite ``values``."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None, None, 0
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, None, 1
    from mtlbench.analysis.stats import bootstrap_ci

    return mean, bootstrap_ci(finite, seed=seed), len(finite)


# ------------------------------------------------------------------------------------------ output
def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _ours(result: CellResult, scale: str) -> str:
    if result.ours is None:
        return "- " + (f"({result.note})" if result.note else "(not run)")
    text = _fmt(result.ours)
    if result.cell.units:
        text += f" {result.cell.units}"
    if result.ci is not None:
        text += f" [{_fmt(result.ci[0])}, {_fmt(result.ci[1])}]"
    text += f" (n={result.n}, {scale} scale)"
    if result.note:
        text += f"; {result.note}"
    return text


def to_markdown(outcome: StudyOutcome) -> str:
    lines = [f"# {outcome.study}: {outcome.targets} of paper {outcome.paper} ({outcome.scale} scale)", ""]
    for note in outcome.notes:
        lines.append(f"> {note}")
    if outcome.notes:
        lines.append("")
    if outcome.cells:
        lines += [
            "## Cells",
            "",
            "| cell | published (paper's convention) | published in ours | ours (mean [95% CI]) |",
            "|---|---|---|---|",
        ]
        for r in outcome.cells:
            converted = r.cell.published.converted
            lines.append(
                f"| {r.cell.label} | {r.cell.published.describe()} | {_fmt(converted)} | {_ours(r, outcome.scale)} |"
            )
        lines.append("")
    if outcome.claims:
        lines += ["## Claims", "", "| claim | source | verdict | detail |", "|---|---|---|---|"]
        for r in outcome.claims:
            lines.append(f"| {r.claim.text} | {r.claim.source} | **{r.verdict}** | {r.detail} |")
        lines.append("")
    for title, table in outcome.tables.items():
        lines += [f"## {title}", "", table, ""]
    for figure in outcome.figures:
        lines += [f"![{Path(figure).stem}]({Path(figure).name})", ""]
    return "\n".join(lines)


def _html(outcome: StudyOutcome, markdown: str) -> str:
    body = html.escape(markdown)
    images = "".join(f'<p><img src="{html.escape(Path(f).name)}" style="max-width:100%"></p>' for f in outcome.figures)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(outcome.study)}</title></head>"
        f"<body><pre style='white-space:pre-wrap'>{body}</pre>{images}</body></html>"
    )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outcome(outcome: StudyOutcome, out: Path) -> dict[str, Path]:
    """``study.md``, ``study.json`` and ``index.html`` in ``out`` (atomic writes)."""
    markdown = to_markdown(outcome)
    paths = {"markdown": out / "study.md", "json": out / "study.json", "html": out / "index.html"}
    _atomic_write(paths["markdown"], markdown)
    _atomic_write(paths["json"], json.dumps(outcome.to_dict(), indent=2, allow_nan=False))
    _atomic_write(paths["html"], _html(outcome, markdown))
    return paths


__all__ = [
    "DIRECTIONS",
    "SCALES",
    "Cell",
    "CellResult",
    "Claim",
    "ClaimResult",
    "Published",
    "ScaleInfo",
    "Study",
    "StudyContext",
    "StudyOutcome",
    "cell_value",
    "no_number",
    "to_markdown",
    "write_outcome",
]
