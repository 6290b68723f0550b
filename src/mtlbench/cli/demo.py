"""``mtlbench demo``: the main job, end to end on a laptop in minutes.

Fetch MNIST, train the single-task references of CL and RR and the methods on Multi-MNIST CL_RR
(reduced data and epochs, stated in the output), then print a Delta_m / mean-rank table, write it
as Markdown next to the results store, and end with the HTML report of ``mtlbench report``.
Completed runs in the store are reused.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import app
from mtlbench.cli.common import EpochProgress, checkpoint_root, console, results_path
from mtlbench.errors import UserInputError

#: Unit. Scal. and the eight SMTOs 000 shortlisted after Multi-MNIST (section 3.1)
SHORTLIST = ["unit_scal", "edm", "imtl", "cagrad", "rotograd", "nash_mtl", "auto_lambda", "cdtt", "famo"]
#: 000 Appendix A.6 (CL_RR): best method-specific settings
DEMO_SETTINGS = {"cagrad": {"c": 0.8}, "cdtt": {"alpha": 0.2}, "famo": {"gamma": 1e-4}}


def _choose_methods(spec: str) -> list[str]:
    from mtlbench.methods import METHODS

    if spec == "shortlist":
        return [m for m in SHORTLIST if m in METHODS]
    if spec == "all":
        return [m for m in METHODS.names() if m not in {"sum", "fixed_weights"}]
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    for name in chosen:
        METHODS[name]  # one-line error listing the methods if unknown
    return chosen


@app.command()
def demo(
    methods: Annotated[
        str, typer.Option(help="'shortlist' (Unit. Scal. + 000's eight SMTOs), 'all', or names joined by commas.")
    ] = "shortlist",
    train_size: Annotated[int, typer.Option(help="Training examples of Multi-MNIST used (of 50,000).")] = 20000,
    epochs: Annotated[int, typer.Option(help="Epochs per run (000 trains 100).")] = 5,
    seeds: Annotated[int, typer.Option(help="Seeds per method and per reference.")] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate (000's best for Unit. Scal. on CL_RR).")] = 1e-3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    results: Annotated[Path | None, typer.Option(help="Results database.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
) -> None:
    """Multi-MNIST CL_RR end to end: references, methods, Delta_m / mean-rank table (Markdown too)."""
    from mtlbench.analysis.comparison import comparison_table, to_markdown
    from mtlbench.data import DATASETS
    from mtlbench.problems import create_problem
    from mtlbench.store.results import ResultsStore
    from mtlbench.training import RunConfig, Trainer
    from mtlbench.training.references import train_references

    if train_size < 1 or epochs < 1 or seeds < 1:
        raise UserInputError("--train-size, --epochs and --seeds must be >= 1")
    chosen = _choose_methods(methods)
    path = results_path(results)
    started = time.perf_counter()
    console.print(
        f"[bold]mtlbench demo[/bold]: Multi-MNIST CL_RR, {train_size} training images (of 50,000), "
        f"{epochs} epochs (000: 100), {seeds} seed(s) (000: 10), lr {lr:g}, dropout 0, Adam, batch 256; "
        f"methods: {', '.join(chosen)}",
        highlight=False,
    )
    console.print(DATASETS["mnist"].fetch(), highlight=False)
    store = ResultsStore(path)
    checkpoints = checkpoint_root(path)
    base = RunConfig(
        problem="multi_mnist",
        tasks="CL_RR",
        problem_options={"train_size": train_size},
        lr=lr,
        dropout=0.0,
        weight_decay=0.0,
        epochs=epochs,
        device=device,
    )
    train_references(
        base,
        seeds=list(range(1, seeds + 1)),
        store=store,
        checkpoint_root=checkpoints,
        progress=EpochProgress("reference", progress),
        announce=lambda c: console.print(f"single-task reference {c.tasks[0]}, seed {c.seed}", highlight=False),
    )
    failed = []
    for method in chosen:
        for seed in range(1, seeds + 1):
            config = RunConfig(**{**base.__dict__, "method": method, "seed": seed})
            config.method_params = dict(DEMO_SETTINGS.get(method, {}))
            if store.completed_run(config.resolved().to_dict()) is not None:
                console.print(f"{method} seed {seed}: already in the store", highlight=False)
                continue
            console.print(f"training {method}, seed {seed}", highlight=False)
            result = Trainer(
                config, store=store, checkpoint_root=checkpoints, progress=EpochProgress(method, progress)
            ).run()
            if result.status != "completed":
                failed.append(method)
                console.print(f"[red]{method} seed {seed} failed:[/red] {result.error}", highlight=False)
    problem = create_problem("multi_mnist", "CL_RR", train_size=train_size)
    table = comparison_table(store, problem, methods=chosen)
    markdown = to_markdown(table)
    report = path.parent / "demo.md"
    header = (
        f"# mtlbench demo: Multi-MNIST CL_RR\n\n{train_size} training images, {epochs} epochs, {seeds} seed(s), "
        f"lr {lr:g}. Test metrics (CL accuracy, higher is better; RR MSE, lower is better), test Δm (%) "
        "against the single-task references (higher is better) and mean rank MR (lower is better).\n\n"
    )
    report.parent.mkdir(parents=True, exist_ok=True)
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text(header + markdown + "\n")
    tmp.replace(report)
    print(markdown)
    from mtlbench.analysis.report import write_report

    html = write_report(store, problem, path.parent / "demo-report")
    console.print(f"\ntable written to {report}; report in {html}; results in {path}", highlight=False)
    console.print(f"demo finished in {time.perf_counter() - started:.0f}s", highlight=False)
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed: {', '.join(failed)}[/red]")
