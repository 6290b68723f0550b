"""The ``mtlbench`` Typer application; each module of ``mtlbench.cli`` adds its commands to it.

Command modules import only typer, rich and the standard library at module level (their heavy imports,
torch, pandas, matplotlib, live inside the command functions), so that ``mtlbench --help``, every
command's ``--help``, ``methods``, ``problems`` and ``sweep --list`` start fast; ``tests/test_startup.py``
checks it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated

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

#: modules of this package that define no commands
NOT_COMMANDS = {"app", "main", "common"}


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Print the traceback of an internal error (also MTLBENCH_DEBUG=1).", show_default=False
        ),
    ] = False,
) -> None:
    """Multi-task optimizers (SMTOs) and the benchmark protocol that tests them against Unit. Scal."""


def load_commands() -> None:
    """Import every command module of ``mtlbench.cli`` (each registers its commands on :data:`app`)."""
    import mtlbench.cli as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in NOT_COMMANDS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
