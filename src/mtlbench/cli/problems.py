"""``mtlbench problems``: the registered benchmark problems, their tasks, metrics and options.

Read from :mod:`mtlbench.catalog`, so it does not import torch (plugins are imported to describe them).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from mtlbench.cli.app import app
from mtlbench.cli.common import print_table


@app.command("problems")
def list_problems() -> None:
    """List every registered problem with its tasks (metrics), options and default protocol."""
    from mtlbench import catalog

    table = Table(title="mtlbench problems")
    for column in ("name", "tasks (metrics, ↑ higher is better)", "options (default)", "defaults"):
        table.add_column(column, overflow="fold")
    for name, entry in catalog.problems().items():
        tasks = "; ".join(
            f"{task}: " + ", ".join(f"{m['name']}{'↑' if m['higher_is_better'] else '↓'}" for m in spec["metrics"])
            for task, spec in entry["tasks"].items()
        )
        options = "; ".join(f"{o['name']}={o['default']}" for o in entry["options"]) or "-"
        d = entry["defaults"]
        defaults = (
            f"{d['optimizer']} lr={d['lr']:g} batch={d['batch_size']} epochs={d['epochs']} scheduler={d['scheduler']}"
        )
        table.add_row(*(Text(cell) for cell in (name, tasks, options, defaults)))
    print_table(table)
