"""``mtlbench methods``: the method registry as a table (kind, head rule, hyperparameters, citation)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mtlbench.cli.app import app


@app.command("methods")
def list_methods(
    name: Annotated[str | None, typer.Argument(help="Show one method in detail (grids, citation).")] = None,
) -> None:
    """List every registered multi-task method with its kind, head-gradient rule and hyperparameters."""
    from mtlbench.methods import METHODS, get

    console = Console(width=200)
    if name is not None:
        cls = get(name)
        console.print(f"[bold]{cls.name}[/bold] — {cls.title}")
        console.print(
            f"kind: {cls.kind.value}; heads: {cls.head_gradient.value} gradient; "
            f"{'stateless' if cls.stateless else 'stateful'}{'; randomized' if cls.randomized else ''}"
        )
        console.print(f"citation: {cls.citation}")
        for h in cls.hyperparameters:
            console.print(f"  {h.name} = {h.default!r}  ({h.allowed()}): {h.doc}")
        for problem, grid in cls.grids.items():
            console.print(f"  grid on {problem}: {dict(grid)}")
        doc = (cls.__doc__ or "").strip()
        if doc:
            console.print(doc)
        return
    table = Table(title="mtlbench methods")
    for column in ("name", "title", "kind", "heads", "hyperparameters (default, allowed)", "citation"):
        table.add_column(column, overflow="fold")
    for method_name, cls in METHODS.items():
        hps = "; ".join(f"{h.name}={h.default!r} {h.allowed()}" for h in cls.hyperparameters if h.name != "space")
        table.add_row(method_name, cls.title, cls.kind.value, cls.head_gradient.value, hps or "-", cls.citation)
    console.print(table)
