"""``mtlbench sweep``: 000's protocol (references, grid search, selection, final seeds) as one resumable command."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mtlbench.cli.app import app
from mtlbench.cli.common import checkpoint_root, console, print_table, results_path, writable_path
from mtlbench.errors import UserInputError, unknown

ResultsOpt = Annotated[
    Path | None, typer.Option("--results", help="Results database (default: $MTLBENCH_RESULTS or ./mtlbench-results).")
]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _finite(value):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _list_specs() -> None:
    from mtlbench.sweeps.spec import builtin_specs, load_spec

    table = Table(title="built-in sweeps: mtlbench sweep NAME [--scale smoke|cpu|paper] [--dry-run]")
    table.add_column("name", no_wrap=True)
    table.add_column("problem (options) tasks", overflow="fold")
    table.add_column("methods", justify="right")
    table.add_column("seeds", justify="right")
    table.add_column("description", overflow="fold", ratio=1)
    for name in builtin_specs():
        spec = load_spec(name)
        tasks = spec.tasks if isinstance(spec.tasks, str) else "_".join(spec.tasks)
        options = ",".join(f"{k}={v}" for k, v in spec.problem_options.items())
        problem = f"{spec.problem}{f' ({options})' if options else ''} {tasks}"
        table.add_row(
            name, problem, str(len(spec.methods)), f"{spec.search_seeds}/{spec.final_seeds}", spec.description
        )
    print_table(table, console)
    console.print("seeds: per configuration in the search / reported for the selected configuration", highlight=False)


def _print_dry_run(sweep) -> None:
    dry = sweep.dry_run()
    plan = sweep.plan
    print(
        f"sweep {sweep.spec.name} (scale {sweep.spec.scale}): {plan.spec.problem} {'_'.join(plan.tasks)}, "
        f"{len(plan.method_groups)} method(s), {sweep.threads} torch thread(s) per run"
    )
    for count in dry.counts:
        print(f"  {count.phase:<17} {count.describe()}")
    for note in dry.notes:
        print(f"  note: {note}")
    print(f"runs it would launch now: {dry.to_run}")
    for trial in dry.trials:
        print(f"  {trial.describe()}")


def _print_report(report) -> None:
    import numpy as np

    from mtlbench.sweeps.plan import varying_keys

    if report.references:
        table = Table(title="single-task references (mean of the final seeds of each metric's best configuration)")
        for column in ("task", "metric", "best configuration", "val", "test", "seeds", "failed configs"):
            table.add_column(column)
        for ref in report.references:
            value = ref.value or {}
            best = ref.selection.best
            table.add_row(
                ref.task,
                ref.metric,
                "-" if best is None else best.label(varying_keys([c.candidate for c in ref.selection.scores])),
                _fmt(value.get("val"), 4),
                _fmt(value.get("test"), 4),
                str(value.get("n_seeds", 0)),
                str(ref.selection.failed_configs),
            )
        print_table(table, console)
    if report.methods:
        from mtlbench.training.selection import score_label

        rules = list(dict.fromkeys(method.rule for method in report.methods))
        label = score_label(rules[0]) if len(rules) == 1 else "val score (rule per method)"
        by = label.removesuffix(" %")
        table = Table(title=f"methods: best configuration by mean {by}, test Δm over the final seeds")
        for column in ("method", "best configuration", f"search {label}", "failed configs", "final seeds"):
            table.add_column(column)
        table.add_column("test Δm % (mean ± std)")
        for method in report.methods:
            selection = method.selection
            candidates = [score.candidate for score in selection.scores]
            deltas = method.test_delta_m()
            completed = sum(1 for f in method.final if f.run is not None and f.run.status == "completed")
            shown = f"{np.mean(deltas):+.3f} ± {np.std(deltas):.3f}" if deltas else "-"
            table.add_row(
                method.method,
                "-" if selection.best is None else selection.best.label(varying_keys(candidates)),
                _fmt(selection.score) + ("" if len(rules) == 1 else f" ({method.rule})"),
                f"{selection.failed_configs}/{len(selection.scores)}",
                f"{completed}/{len(method.final)}" if method.final else "-",
                shown,
            )
        print_table(table, console)


@app.command()
def sweep(
    spec: Annotated[
        str | None, typer.Argument(help="A sweep file (TOML, or YAML with pyyaml) or a built-in spec name (--list).")
    ] = None,
    scale: Annotated[
        str | None, typer.Option(help="A scale of the spec: smoke, cpu or paper (default: paper, the spec itself).")
    ] = None,
    executor: Annotated[str, typer.Option(help="local (a process pool on this machine) or ray.")] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="Runs at a time (default: the cores divided by the threads per run; 1 = in this process)."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); default: Ray here.")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads per run (part of each run's config: keep it fixed to resume a sweep)."),
    ] = None,
    results: ResultsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the runs it would launch, per phase.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in sweep specs.")] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Architecture of a dense problem's runs (README, Models): overrides the spec's model."),
    ] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Launch failed runs again.")] = False,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="Keep last.pt of completed runs (default: only best.pt).")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the results (every final seed) as JSON here.")
    ] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Live progress display.")] = None,
) -> None:
    """Run a sweep: single-task references, grid search, selection, final seeds (skips stored runs; resumable)."""
    if list_:
        _list_specs()
        return
    from mtlbench.store.results import ResultsStore
    from mtlbench.sweeps import EXECUTORS, Sweep, load_spec
    from mtlbench.sweeps.progress import RichSweepReporter

    if spec is None:
        raise UserInputError("name a sweep file or a built-in spec (see `mtlbench sweep --list`)")
    if executor not in EXECUTORS:
        raise unknown("executor", executor, EXECUTORS)
    if address is not None and executor != "ray":
        raise UserInputError("--address is for --executor ray")
    for name, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise UserInputError(f"{name}={value} must be >= 1")
    path = results_path(results)
    if report is not None:
        writable_path(report, "--report")
    loaded = load_spec(spec, scale, model=model)
    store = ResultsStore(path)
    runner = Sweep(
        loaded,
        store,
        executor=executor,
        workers=workers,
        address=address,
        threads=threads,
        checkpoint_root=checkpoint_root(path),
        retry_failed=retry_failed,
        prune_checkpoints=not keep_checkpoints,
        reporter=RichSweepReporter(console, progress),
    )
    if dry_run:
        _print_dry_run(runner)
        return
    outcome = runner.run()
    _print_report(outcome)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(_finite(outcome.to_dict()), indent=2, allow_nan=False, default=str))
        console.print(f"report written to {report}", highlight=False)
