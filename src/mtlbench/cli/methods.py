"""``mtlbench methods``: the method registry as a table (kind, head rule, hyperparameters, citation).

Read from :mod:`mtlbench.catalog`, so it does not import torch (plugins are imported to describe them).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mtlbench.cli.app import app
from mtlbench.cli.common import print_table


def _values(values: Any) -> str:
    return "{" + ", ".join(map(str, values)) + "}" if isinstance(values, list) else str(values)


def _show_one(entry: dict[str, Any]) -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]{entry['name']}[/bold] — {entry['title']}")
    state = "stateless" if entry["stateless"] else "stateful"
    console.print(
        f"kind: {entry['kind']}; heads: {entry['head_gradient']} gradient; {state}"
        f"{'; randomized' if entry['randomized'] else ''}"
    )
    console.print(f"citation: {entry['citation']}", markup=False)
    for h in entry["hyperparameters"]:
        console.print(f"  {h['name']} = {h['default']}  ({h['allowed']}): {h['doc']}", markup=False)
    for problem, grid in entry["grids"].items():
        shown = ", ".join(f"{key} ∈ {_values(values)}" for key, values in grid.items())
        console.print(f"  000's grid on {problem}: {shown or '(none)'}", markup=False)
    if entry["doc"]:
        console.print(entry["doc"], markup=False)


@app.command("methods")
def list_methods(
    name: Annotated[str | None, typer.Argument(help="Show one method in detail (grids, citation).")] = None,
) -> None:
    """List every registered multi-task method with its kind, head-gradient rule and hyperparameters."""
    from mtlbench import catalog

    if name is not None:
        _show_one(catalog.method(name))
        return
    table = Table(title="mtlbench methods")
    for column in ("name", "title", "kind", "heads", "hyperparameters (default, allowed)", "citation"):
        table.add_column(column, overflow="fold")
    for method_name, entry in catalog.methods().items():
        hps = "; ".join(
            f"{h['name']}={h['default']} {h['allowed']}" for h in entry["hyperparameters"] if h["name"] != "space"
        )
        cells = (method_name, entry["title"], entry["kind"], entry["head_gradient"], hps or "-", entry["citation"])
        table.add_row(*(Text(cell) for cell in cells))
    print_table(table)
