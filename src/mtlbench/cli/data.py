"""``mtlbench data fetch NAME`` and ``mtlbench data info [NAME]``, driven by the ``DATASETS`` registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mtlbench.cli.app import data_app
from mtlbench.cli.common import print_table
from mtlbench.data import DATASETS


@data_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name (see `mtlbench data info`).")],
    source: Annotated[
        Path | None, typer.Option("--source", help="A local copy to import instead of downloading.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the cache even if it is valid.")] = False,
) -> None:
    """Get dataset NAME into the cache (from --source when given) and check it."""
    dataset = DATASETS[name]
    typer.echo(dataset.fetch(source, force=force))


def _flatten(info: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in info.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


@data_app.command("info")
def info(name: Annotated[str | None, typer.Argument(help="Dataset name; all datasets when omitted.")] = None) -> None:
    """Show what is cached: location, status, sizes and checksums."""
    console = Console()
    if name is not None:
        dataset = DATASETS[name]
        details = dataset.info()
        if not details:
            console.print(f"{name}: not cached; run `mtlbench data fetch {name}`")
            return
        table = Table(title=f"{name}: {dataset.description}")
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for key, value in _flatten(details):
            table.add_row(key, value)
        print_table(table, console)
        return
    table = Table(title="datasets")
    table.add_column("name")
    table.add_column("cached")
    table.add_column("description", overflow="fold")
    for dataset_name, dataset in DATASETS.items():
        details = dataset.info()
        table.add_row(dataset_name, "yes" if details else "no", dataset.description)
    print_table(table, console)
