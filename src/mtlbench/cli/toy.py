"""``mtlbench toy``: CAGrad's two-task toy problem, as counted by Elich et al. (001, Tables 1 and A7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import app
from mtlbench.cli.common import parse_assignments, writable_path


@app.command("toy")
def toy(
    method: Annotated[str, typer.Option("--method", "-m", help="A gradient-combination method, e.g. sum, cagrad.")] = (
        "sum"
    ),
    optimizer: Annotated[str, typer.Option(help="adam or sgd (plain gradient descent; alias gd).")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate (001 uses 10 ... 0.001).")] = 0.001,
    steps: Annotated[int, typer.Option(help="Iterations per start (001: 100000).")] = 100_000,
    tolerance: Annotated[float, typer.Option(help="Converged when the mean loss is within this of -15.0916.")] = 0.1,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Method hyperparameter name=value (repeatable).")
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            "--scale",
            help="mean: directions divided by T as in the original toy code; sum: mtlbench's scale "
            "(--scale is the old name).",
        ),
    ] = "mean",
    json_: Annotated[bool, typer.Option("--json", help='Print only {"iterations": [i1, i2, i3]}.')] = False,
    plot: Annotated[Path | None, typer.Option(help="Save the trajectories over the loss contours (PNG).")] = None,
) -> None:
    """Run the toy from its three starts; print the first iteration each reaches the global minimum."""
    from mtlbench.problems.toy import GLOBAL_MINIMUM
    from mtlbench.studies.toy import plot_toy, run_toy

    hyperparameters = parse_assignments(set_, "--set")
    if plot is not None:
        writable_path(plot, "--plot")
    result = run_toy(
        method,
        optimizer,
        lr,
        steps,
        tolerance,
        hyperparameters=hyperparameters,
        objective=objective,
        record_every=1 if plot is not None else None,
        stop_when_converged=plot is None,
    )
    if plot is not None:
        plot_toy(result, plot)
    if json_:
        print(json.dumps({"iterations": result.iterations}))
        return
    settings = ", ".join(f"{k}={v}" for k, v in result.hyperparameters.items() if k != "space")
    print(
        f"{method}{f' ({settings})' if settings else ''} + {result.optimizer}, lr={lr:g}, {steps} steps, "
        f"tolerance {tolerance:g} of the global minimum {GLOBAL_MINIMUM}"
    )
    for start, iteration in zip(result.starts, result.iterations, strict=True):
        print(f"  start ({start[0]:g}, {start[1]:g}): {'never' if iteration is None else iteration}")
    overall = result.all_converged_at
    print(f"  all starts (001's table entry): {'never' if overall is None else overall}")
    if plot is not None:
        print(f"  plot: {plot}")
