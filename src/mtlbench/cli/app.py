"""The ``mtlbench`` Typer application; each module of ``mtlbench.cli`` adds its commands to it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mtlbench",
    help="Multi-task optimizers (SMTOs) and the benchmark protocol that tests them against Unit. Scal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch, prepare and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
