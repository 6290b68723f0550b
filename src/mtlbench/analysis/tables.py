"""Writing analysis tables: Markdown, LaTeX (booktabs, compiles as is), CSV and HTML (sortable).

A :class:`Table` is a DataFrame plus presentation: a caption, which columns are "better" when higher
or lower (their best value is set in bold in Markdown, LaTeX and HTML; ties are all bold), number
formats, optional column groups (a spanning LaTeX header with ``\\cmidrule``) and notes.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Table:
    name: str
    caption: str
    frame: pd.DataFrame
    #: column -> "max" or "min": that column's best value is bold
    best: Mapping[str, str] = field(default_factory=dict)
    #: column -> format spec (e.g. ".3f", ".2g", "d"); default ".4g" for floats
    formats: Mapping[str, str] = field(default_factory=dict)
    #: column -> group label (consecutive columns with the same label share a LaTeX header cell)
    groups: Mapping[str, str] = field(default_factory=dict)
    #: column -> header shown (default: the column name)
    headers: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()

    # ---------------------------------------------------------------------------------- helpers
    def header(self, column: str) -> str:
        return self.headers.get(column, column)

    def flat_header(self, column: str) -> str:
        group = self.groups.get(column)
        return f"{group} {self.header(column)}" if group else self.header(column)

    def cell(self, column: str, value: Any) -> str:
        """Formatted value ('' for missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int | float) and not isinstance(value, bool):
            spec = self.formats.get(column)
            if spec is None:
                spec = "d" if float(value).is_integer() and isinstance(value, int) else ".4g"
            if spec == "d":
                return str(int(value))
            if math.isinf(value):
                return "inf" if value > 0 else "-inf"
            return format(value, spec)
        if hasattr(value, "item"):
            return self.cell(column, value.item())
        return str(value)

    def best_rows(self, column: str) -> set[int]:
        """Row positions holding the best value of ``column`` (compared as displayed, so ties are kept)."""
        rule = self.best.get(column)
        if rule not in ("max", "min"):
            return set()
        numbers = []
        for position, value in enumerate(self.frame[column].tolist()):
            number = _number(value)
            if number is not None:
                numbers.append((position, number))
        if not numbers:
            return set()
        target = max(n for _, n in numbers) if rule == "max" else min(n for _, n in numbers)
        shown = self.cell(column, target)
        return {position for position, number in numbers if self.cell(column, number) == shown}

    # ---------------------------------------------------------------------------------- writers
    def to_markdown(self) -> str:
        columns = list(self.frame.columns)
        bold = {c: self.best_rows(c) for c in columns}
        lines = ["| " + " | ".join(_md_escape(self.flat_header(c)) for c in columns) + " |"]
        align = ["---:" if _is_numeric(self.frame[c]) else ":---" for c in columns]
        lines.append("| " + " | ".join(align) + " |")
        for position, row in enumerate(self.frame.itertuples(index=False)):
            cells = []
            for c, value in zip(columns, row, strict=True):
                text = _md_escape(self.cell(c, value))
                cells.append(f"**{text}**" if position in bold[c] and text else text)
            lines.append("| " + " | ".join(cells) + " |")
        body = "\n".join(lines)
        notes = "".join(f"\n\n{note}" for note in self.notes)
        return f"**{self.caption}**\n\n{body}{notes}\n"

    def to_latex(self, *, standalone: bool = True) -> str:
        """A booktabs table; ``standalone`` wraps it in a minimal article that compiles with pdflatex."""
        columns = list(self.frame.columns)
        bold = {c: self.best_rows(c) for c in columns}
        spec = "".join("r" if _is_numeric(self.frame[c]) else "l" for c in columns)
        lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(self.caption)}}}"]
        lines.append(rf"\label{{tab:{self.name}}}")
        lines.append(rf"\begin{{tabular}}{{{spec}}}")
        lines.append(r"\toprule")
        if any(self.groups.get(c) for c in columns):
            cells, rules, index = [], [], 0
            while index < len(columns):
                group = self.groups.get(columns[index], "")
                span = 1
                while index + span < len(columns) and self.groups.get(columns[index + span], "") == group:
                    span += 1
                if group:
                    cells.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(group)}}}")
                    rules.append(rf"\cmidrule(lr){{{index + 1}-{index + span}}}")
                else:
                    cells.extend([""] * span)
                index += span
            lines.append(" & ".join(cells) + r" \\")
            lines.append(" ".join(rules))
        lines.append(" & ".join(latex_escape(self.header(c)) for c in columns) + r" \\")
        lines.append(r"\midrule")
        for position, row in enumerate(self.frame.itertuples(index=False)):
            cells = []
            for c, value in zip(columns, row, strict=True):
                text = latex_escape(self.cell(c, value))
                if _number(value) is not None and text.startswith("-"):
                    text = "$-$" + text[1:]  # a minus sign, not a hyphen
                cells.append(rf"\textbf{{{text}}}" if position in bold[c] and text else text)
            lines.append(" & ".join(cells) + r" \\")
        lines.append(r"\bottomrule")
        lines.append(r"\end{tabular}")
        for note in self.notes:
            lines.append(rf"\par\smallskip{{\footnotesize {latex_escape(note)}}}")
        lines.append(r"\end{table}")
        table = "\n".join(lines) + "\n"
        if not standalone:
            return table
        return (
            "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
            "\\usepackage[a4paper,landscape,margin=1.5cm]{geometry}\n\\begin{document}\n" + table + "\\end{document}\n"
        )

    def to_csv(self, path: Path) -> None:
        frame = self.frame.copy()
        frame.columns = [self.flat_header(c) for c in self.frame.columns]
        frame.to_csv(path, index=False)

    def to_html(self) -> str:
        """A ``<table class="sortable">``; each cell carries ``data-sort`` (the raw number) for sorting."""
        columns = list(self.frame.columns)
        bold = {c: self.best_rows(c) for c in columns}
        head = "".join(f'<th title="click to sort">{html.escape(self.flat_header(c))}</th>' for c in columns)
        rows = []
        for position, row in enumerate(self.frame.itertuples(index=False)):
            cells = []
            for c, value in zip(columns, row, strict=True):
                text = html.escape(self.cell(c, value))
                number = _number(value)
                sort = f' data-sort="{number!r}"' if number is not None else ""
                numeric = ' class="num"' if number is not None else ""
                shown = f"<b>{text}</b>" if position in bold[c] and text else text
                cells.append(f"<td{sort}{numeric}>{shown}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in self.notes)
        return (
            f'<p class="caption">{html.escape(self.caption)}</p>'
            f'<table class="sortable" id="table-{html.escape(self.name)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}"
        )

    def write(self, folder: Path) -> list[Path]:
        """``<name>.md``, ``<name>.tex`` and ``<name>.csv`` in ``folder`` (written atomically)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in ((".md", self.to_markdown()), (".tex", self.to_latex())):
            path = folder / f"{self.name}{suffix}"
            _atomic_text(path, text)
            paths.append(path)
        path = folder / f"{self.name}.csv"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.to_csv(tmp)
        os.replace(tmp, path)
        paths.append(path)
        return paths


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def _is_numeric(series: pd.Series) -> bool:
    values = [v for v in series.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(values) and all(_number(v) is not None for v in values)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "Δ": r"\ensuremath{\Delta}",
    "±": r"\ensuremath{\pm}",
    "≥": r"\ensuremath{\geq}",
    "≤": r"\ensuremath{\leq}",
    "α": r"\ensuremath{\alpha}",
    "β": r"\ensuremath{\beta}",
    "↑": r"\ensuremath{\uparrow}",
    "↓": r"\ensuremath{\downarrow}",
    "–": "--",
    "—": "---",
    "×": r"\ensuremath{\times}",
    "…": r"\ldots{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; Greek letters and arrows used in headers become math; other non-ASCII drops."""
    out = []
    for char in str(text):
        if char in _LATEX:
            out.append(_LATEX[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            out.append("?")
    return "".join(out)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["Table", "latex_escape"]
