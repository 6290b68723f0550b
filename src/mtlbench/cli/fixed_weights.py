"""``mtlbench fixed-weights``: constant task weights from an SMTO's runs (000 section 3.5), optionally trained."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import app
from mtlbench.cli.common import EpochProgress, checkpoint_root, coerce_option, console, parse_assignments, pct
from mtlbench.cli.common import results_path as _results_path
from mtlbench.errors import MissingDataError, UserInputError


@app.command("fixed-weights")
def fixed_weights(
    source: Annotated[str, typer.Option("--from", help="Source method whose weights are extracted, e.g. cagrad.")],
    problem: Annotated[str, typer.Option("--problem", "-p", help="Problem name.")],
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Tasks joined by '_', e.g. CL_RR.")],
    run: Annotated[int | None, typer.Option("--run", help="Extract from this run id.")] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", "--extract-lr", help="Extract from the source's best setting at this learning rate."),
    ] = None,
    train_lr: Annotated[
        str | None,
        typer.Option(
            "--train-lr",
            metavar="best|LR",
            help="Learning rate of the --launch runs: the source run's (default), best (the lr of the source "
            "method's selected setting; 000 extracted QM9's weights at lr 1e-4 and trained them at Nash-MTL's "
            "best lr) or a number.",
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(help="Objective scale of the --launch runs: sum, or mean (000: weights summing to 1)."),
    ] = "sum",
    launch: Annotated[
        bool, typer.Option("--launch", help="Train fixed_weights runs with the source run's hyperparameters.")
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option(help="Seeds 1..N to train with --launch (default: as many as the source setting has)."),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Problem option name=value (repeatable).")
    ] = None,
    device: Annotated[str, typer.Option(help="Device for --launch: auto, cpu, cuda or cuda:N.")] = "auto",
    results: Annotated[Path | None, typer.Option("--results", help="Results database.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
) -> None:
    """Extract constant task weights from a method's run as 000 section 3.5 does: per epoch the mean weight of
    each task normalised to sum 1, EMA with beta 0.9 from the first epoch's value, the last value renormalised
    (printed to sum 1 and to sum T, the `--set weights=...` of `fixed_weights`). The source is --run ID, or the
    first seed of the source method's best-validation setting (at --lr if given). --launch trains fixed_weights
    runs with the source run's hyperparameters (lr, dropout, weight decay, epochs, batch size, optimizer, scheduler,
    problem options)."""
    from mtlbench.analysis.data import load_problem_runs, method_title, resolve_problem
    from mtlbench.analysis.fixed_weights import fixed_weights_config, parse_train_lr, weights_from_run
    from mtlbench.cli.results import open_results
    from mtlbench.methods import METHODS

    METHODS[source]  # one-line error for an unknown method
    if seeds is not None and seeds < 1:
        raise UserInputError(f"--seeds={seeds} must be >= 1")
    train_lr_value = parse_train_lr(train_lr)
    path = _results_path(results)
    store = open_results(path)
    options = {k: coerce_option(v) for k, v in parse_assignments(option, "--option").items()}
    if run is not None:
        stored = store.run(run)
        config = stored["config"]
        if config.get("method") != source or config.get("problem") != problem:
            raise UserInputError(
                f"run {run} is {config.get('method')} on {config.get('problem')}, not {source} on {problem}"
            )
        if stored["status"] != "completed":
            raise UserInputError(f"run {run} is {stored['status']}, not completed")
        run_id, n_source = run, 1
    else:
        resolved, _ = resolve_problem(store, problem, tasks, options or None)
        data = load_problem_runs(store, resolved)
        candidates = [r for r in data.runs if r.method == source and (lr is None or _close(r.config.get("lr"), lr))]
        if not candidates:
            at = f" at lr {lr:g}" if lr is not None else ""
            raise MissingDataError(
                f"no completed {source} runs{at} on {problem} {'_'.join(resolved.task_names)}; train them with "
                f"`mtlbench train --problem {problem} --tasks {'_'.join(resolved.task_names)} --method {source}`"
            )
        selection = dataclasses.replace(data, runs=candidates)
        chosen = selection.final_runs()[source]
        run_id, n_source = chosen[0].id, len(chosen)
    if train_lr_value == "best":
        train_lr_value = _best_lr(store, source, problem, tasks, options)
    extracted = weights_from_run(store, run_id)
    if list(extracted.tasks) != tasks.split("_") and run is not None:
        raise UserInputError(f"run {run} has tasks {'_'.join(extracted.tasks)}, not {tasks}")
    config = extracted.config
    print(
        f"{method_title(source)} run {run_id} (seed {config.get('seed')}, lr {config.get('lr')}, dropout "
        f"{config.get('dropout')}, weight decay {config.get('weight_decay')}, {config.get('epochs')} epochs)"
    )
    print(
        "weights (sum 1): " + ", ".join(f"{t}={w:.6f}" for t, w in zip(extracted.tasks, extracted.weights, strict=True))
    )
    print(f"fixed_weights:   --method fixed_weights --set {extracted.set_option()}")
    if train_lr_value is not None:
        print(f"training lr:     {train_lr_value:g} (--train-lr {train_lr})")
    if not launch:
        return
    from mtlbench.store.results import ResultsStore
    from mtlbench.training import RunConfig, Trainer

    store = ResultsStore(path)
    failed = 0
    for seed in range(1, (seeds or n_source) + 1):
        run_config = RunConfig(**fixed_weights_config(extracted, seed, device, lr=train_lr_value, objective=objective))
        if store.completed_run(run_config.resolved().to_dict()) is not None:
            console.print(f"fixed_weights seed {seed}: already in the store", highlight=False)
            continue
        console.print(f"training fixed_weights seed {seed}", highlight=False)
        result = Trainer(
            run_config, store=store, checkpoint_root=checkpoint_root(path), progress=EpochProgress("fixed", progress)
        ).run()
        if result.status != "completed":
            failed += 1
            console.print(f"[red]seed {seed} failed:[/red] {result.error}", highlight=False)
            continue
        print(f"run {result.run_id}: fixed_weights seed {seed}, test Δm {pct(result.test_delta_m, 3)}")
    if failed:
        raise typer.Exit(1)


def _best_lr(store, source: str, problem: str, tasks: str, options: dict) -> float:
    """The learning rate of the source method's selected setting (best validation Delta_m over its settings)."""
    from mtlbench.analysis.data import load_problem_runs, resolve_problem

    resolved, _ = resolve_problem(store, problem, tasks, options or None)
    data = load_problem_runs(store, resolved)
    runs = [r for r in data.runs if r.method == source]
    if not runs:
        raise MissingDataError(f"--train-lr best: no completed {source} runs on {problem} {tasks}")
    chosen = dataclasses.replace(data, runs=runs).final_runs()[source]
    return float(chosen[0].config["lr"])


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(float(a) - b) <= 1e-12 + 1e-9 * abs(b)
