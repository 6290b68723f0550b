"""``mtlbench report`` (every analysis into one HTML page) and ``mtlbench analysis <name>`` (one analysis)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtlbench import catalog
from mtlbench.cli.app import app
from mtlbench.cli.common import coerce_option, console, parse_assignments, results_path, writable_path

analysis_app = typer.Typer(
    help="Run one analysis of the stored runs of a problem; its tables (.md, .tex, .csv) and figures "
    "(.png, .pdf) go to --out.",
    no_args_is_help=True,
)
app.add_typer(analysis_app, name="analysis")

ProblemOpt = Annotated[str, typer.Option("--problem", "-p", help="Problem name (see `mtlbench problems`).")]
TasksOpt = Annotated[str, typer.Option("--tasks", "-t", help="Tasks joined by '_', e.g. CL_RR.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Output folder (default: <results folder>/reports/<problem>_<tasks>).")
]
ResultsOpt = Annotated[
    Path | None, typer.Option("--results", help="Results database (default: $MTLBENCH_RESULTS or ./mtlbench-results).")
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="Problem option name=value (repeatable); default: the configuration with the most stored runs.",
    ),
]


def _load(problem: str, tasks: str, option: list[str] | None, results: Path | None):
    from mtlbench.analysis.data import resolve_problem
    from mtlbench.cli.results import open_results

    path = results_path(results)
    store = open_results(path)
    options = {key: coerce_option(value) for key, value in parse_assignments(option, "--option").items()}
    resolved, notes = resolve_problem(store, problem, tasks, options or None)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)
    return path, store, resolved


@app.command()
def report(
    problem: ProblemOpt,
    tasks: TasksOpt,
    out: OutOpt = None,
    results: ResultsOpt = None,
    option: OptionOpt = None,
) -> None:
    """Write every analysis the store has data for into one self-contained HTML page (plus .md/.tex/.csv
    tables and .png/.pdf figures), and list the analyses skipped for lack of data."""
    from mtlbench.analysis.report import default_report_dir, skipped, write_report

    if out is not None:
        writable_path(out, "--out", folder=True)
    path, store, resolved = _load(problem, tasks, option, results)
    folder = out if out is not None else default_report_dir(path, resolved)
    index = write_report(store, resolved, folder)
    for name, reason in skipped(index).items():
        console.print(f"skipped {name}: {reason}", highlight=False, soft_wrap=True)
    print(index)


def _make_command(name: str, title: str, description: str) -> None:

    def command(
        problem: ProblemOpt,
        tasks: TasksOpt,
        out: OutOpt = None,
        results: ResultsOpt = None,
        option: OptionOpt = None,
    ) -> None:
        from mtlbench.analysis.data import load_problem_runs
        from mtlbench.analysis.report import default_report_dir, run_analysis
        from mtlbench.errors import MissingDataError

        if out is not None:
            writable_path(out, "--out", folder=True)
        path, store, resolved = _load(problem, tasks, option, results)
        folder = out if out is not None else default_report_dir(path, resolved)
        outcome = run_analysis(load_problem_runs(store, resolved), name, folder)
        if outcome.skipped:
            raise MissingDataError(f"{name}: {outcome.skipped}")
        assert outcome.result is not None
        for table in outcome.result.tables:
            print(table.to_markdown())
        for file in outcome.files:
            print(file)

    command.__doc__ = f"{title}: {description}"
    analysis_app.command(name, help=command.__doc__)(command)


# the analyses' names and titles come from the catalog: defining the commands imports no pandas or matplotlib
for _name, _entry in catalog.analyses().items():
    _make_command(_name, _entry["title"], _entry["description"])
