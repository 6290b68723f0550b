"""Matplotlib helpers (Agg backend, no display): figures saved as PNG (embedded in the HTML report) and PDF."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DPI = 130
#: colour of the Unit. Scal. median line (000 Fig. 1: red)
BASELINE_COLOR = "tab:red"


@dataclass
class Figure:
    name: str
    caption: str
    png: Path
    pdf: Path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (a clear error if matplotlib is missing)."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency of the plots extra
        from mtlbench.errors import MissingDataError

        raise MissingDataError("figures need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, folder: Path, name: str, caption: str) -> Figure:
    """Write ``<name>.png`` and ``<name>.pdf`` (atomically) and close the figure."""
    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = folder / f"{name}{suffix}"
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp{suffix}")
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", metadata={} if suffix == ".png" else {"CreationDate": None})
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return Figure(name, caption, paths[0], paths[1])


def grid(n: int, *, width: float = 4.2, height: float = 3.0, max_cols: int = 3, sharey: bool = False) -> tuple:
    """A figure with ``n`` axes in rows of up to ``max_cols`` (unused axes hidden)."""
    plt = pyplot()
    cols = min(max_cols, max(n, 1))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=sharey)
    flat = axes.ravel().tolist()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def boxplot(ax: Any, groups: dict[str, list[float]], *, baseline: str | None = None, ylabel: str = "") -> None:
    """Box plot with the individual values (jittered) and the baseline's median as a horizontal line."""
    labels = list(groups)
    data = [np.asarray(groups[k], dtype=float) for k in labels]
    ax.boxplot(data, showfliers=False, widths=0.6)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    rng = np.random.default_rng(0)
    for position, values in enumerate(data, start=1):
        ax.scatter(
            position + rng.uniform(-0.12, 0.12, len(values)), values, s=10, alpha=0.6, color="tab:blue", zorder=3
        )
    if baseline is not None and baseline in groups and len(groups[baseline]):
        ax.axhline(float(np.median(groups[baseline])), color=BASELINE_COLOR, linestyle="--", linewidth=1.2)
    for tick in ax.get_xticklabels():
        tick.set_rotation(35)
        tick.set_horizontalalignment("right")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


__all__ = ["BASELINE_COLOR", "DPI", "Figure", "boxplot", "grid", "pyplot", "save"]
