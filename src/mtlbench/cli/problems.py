"""``mtlbench problems``: the registered benchmark problems, their tasks, metrics and options."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mtlbench.cli.app import app


@app.command("problems")
def list_problems() -> None:
    """List every registered problem with its tasks (metrics), options and default protocol."""
    from mtlbench.problems import PROBLEMS

    table = Table(title="mtlbench problems")
    for column in ("name", "tasks (metrics, ↑ higher is better)", "options (default)", "defaults"):
        table.add_column(column, overflow="fold")
    for name, cls in PROBLEMS.items():
        tasks = "; ".join(
            f"{t.name}: " + ", ".join(f"{m.name}{'↑' if m.higher_is_better else '↓'}" for m in t.metrics)
            for t in cls.available_tasks().values()
        )
        options = "; ".join(f"{o.name}={o.default!r}" for o in cls.options) or "-"
        d = cls.defaults
        defaults = f"{d.optimizer} lr={d.lr:g} batch={d.batch_size} epochs={d.epochs} scheduler={d.scheduler}"
        table.add_row(name, tasks, options, defaults)
    Console(width=200).print(table)
