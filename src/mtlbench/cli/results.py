"""``mtlbench results`` (list the stored runs) and ``mtlbench export`` (write the store's tables to files)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer

from mtlbench.cli.app import app
from mtlbench.errors import unknown
from mtlbench.store.results import EXPORT_FORMATS, ResultsStore, default_results_path

LIST_FORMATS = ("table", "csv", "json")
TABLE_COLUMNS = (
    ("id", "id"),
    ("kind", "kind"),
    ("problem", "problem"),
    ("tasks", "tasks"),
    ("method", "method"),
    ("seed", "seed"),
    ("status", "status"),
    ("best_epoch", "best epoch"),
    ("val_delta_m", "val Δm %"),
    ("test_delta_m", "test Δm %"),
    ("seconds", "seconds"),
    ("error", "error"),
)
RESULTS_HELP = "Results database (default: $MTLBENCH_RESULTS or ./mtlbench-results/results.db)."


def open_results(path: Path | None) -> ResultsStore:
    """The existing store at ``path`` (default :func:`default_results_path`); MissingDataError if there is none."""
    return ResultsStore(path if path is not None else default_results_path(), create=False)


def _cell(value: Any) -> Any:
    """JSON-friendly cell: NaN and missing -> None, infinities -> "inf"/"-inf", numpy scalars -> Python."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _text(name: str, value: Any) -> str:
    value = _cell(value)
    if value is None:
        return ""
    if name in ("val_delta_m", "test_delta_m") and isinstance(value, float):
        return f"{value:+.3f}"
    if name in ("id", "seed", "best_epoch") and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if name == "seconds" and isinstance(value, float):
        return f"{value:.1f}"
    if name == "error":
        lines = str(value).strip().splitlines()
        line = lines[-1] if lines else ""
        return line if len(line) <= 60 else line[:57] + "..."
    return str(value)


@app.command("results")
def results_command(
    results: Path | None = typer.Option(None, "--results", help=RESULTS_HELP),
    problem: str | None = typer.Option(None, help="Only runs of this problem."),
    tasks: str | None = typer.Option(None, help="Only runs of this task set, e.g. CL_RR or CL,RR."),
    method: str | None = typer.Option(None, help="Only runs of this method."),
    kind: str | None = typer.Option(None, help="Only runs of this kind: multi_task or reference."),
    status: str | None = typer.Option(
        None,
        help="Only runs with this status: running, interrupted (its process is gone: same host, pid not alive; "
        "other hosts, no heartbeat for 5 minutes; `train`/`sweep` resume it), completed or failed.",
    ),
    fmt: str = typer.Option("table", "--format", help="Output: table, csv or json."),
) -> None:
    """List the stored training runs (a run whose process is gone shows as interrupted)."""
    if fmt not in LIST_FORMATS:
        raise unknown("format", fmt, LIST_FORMATS)
    store = open_results(results)
    frame = store.runs(problem=problem, tasks=tasks, method=method, kind=kind, status=status)
    if fmt == "json":
        records = [{key: _cell(value) for key, value in row.items()} for row in frame.to_dict(orient="records")]
        print(json.dumps(records, indent=2, allow_nan=False))
        return
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
        return
    from rich.table import Table

    from mtlbench.cli.common import print_table

    table = Table(title=f"{len(frame)} runs in {store.path}")
    for name, header in TABLE_COLUMNS:
        numeric = name in ("id", "seed", "best_epoch", "val_delta_m", "test_delta_m", "seconds")
        table.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for row in frame.to_dict(orient="records"):
        table.add_row(*(_text(name, row.get(name)) for name, _ in TABLE_COLUMNS))
    print_table(table)  # piped or captured: the table's natural width, nothing cut


@app.command("export")
def export_command(
    out_dir: Path = typer.Argument(..., help="Folder to write runs, epochs, test_metrics and references to."),
    fmt: str = typer.Option("csv", "--format", help="File format: csv or parquet."),
    results: Path | None = typer.Option(None, "--results", help=RESULTS_HELP),
) -> None:
    """Export the results tables, one file per table."""
    if fmt not in EXPORT_FORMATS:
        raise unknown("format", fmt, EXPORT_FORMATS)
    for path in open_results(results).export(out_dir, fmt):
        print(path)
