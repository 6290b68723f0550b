"""One self-contained HTML report of everything the store has for a problem configuration.

:func:`write_report` runs every analysis of :mod:`mtlbench.analysis.analyses`, writes each table as
Markdown, LaTeX and CSV and each figure as PNG and PDF into the report folder, and ``index.html``: the
figures embedded as base64 PNG, the tables sortable (click a header; a small inline script), the
analyses skipped for lack of data with the reason and the command that creates the data.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtlbench.analysis.analyses import ANALYSES, Result, Skip
from mtlbench.analysis.data import ProblemRuns, load_problem_runs
from mtlbench.errors import MissingDataError, unknown
from mtlbench.problems.base import Problem


@dataclass
class Outcome:
    name: str
    title: str
    description: str
    result: Result | None
    skipped: str | None
    files: list[Path]


def run_analysis(data: ProblemRuns, name: str, out: Path) -> Outcome:
    """Run one analysis into ``out`` (its tables written as .md/.tex/.csv); a Skip becomes the outcome's reason."""
    if name not in ANALYSES:
        raise unknown("analysis", name, list(ANALYSES))
    spec = ANALYSES[name]
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = spec.function(data, out)
    except (Skip, MissingDataError) as reason:  # MissingDataError: e.g. matplotlib is not installed
        return Outcome(name, spec.title, spec.description, None, str(reason), [])
    files: list[Path] = []
    for table in result.tables:
        files.extend(table.write(out))
    for figure in result.figures:
        files.extend([figure.png, figure.pdf])
    return Outcome(name, spec.title, spec.description, result, None, files)


def write_report(store: Any, problem: Problem, out_dir: str | Path, *, analyses: Sequence[str] | None = None) -> Path:
    """Write the report of ``problem``'s configuration into ``out_dir``; returns the path of ``index.html``.

    Raises MissingDataError (naming what the store has) if the store has no multi-task run of it.
    """
    from mtlbench.analysis.data import store_overview

    out = Path(out_dir)
    names = list(ANALYSES) if analyses is None else list(analyses)
    for name in names:
        if name not in ANALYSES:
            raise unknown("analysis", name, list(ANALYSES))
    data = load_problem_runs(store, problem)
    if not data.runs and not data.failed:
        raise MissingDataError(
            f"no multi-task runs of {problem.name} {'_'.join(problem.task_names)} "
            f"({', '.join(f'{k}={v}' for k, v in problem.option_values.items())}) in {store.path}; "
            f"{store_overview(store)}"
        )
    outcomes = [run_analysis(data, name, out) for name in names]
    page = render_html(data, outcomes, store_path=str(store.path))
    index = out / "index.html"
    tmp = index.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    summary = {
        "problem": problem.name,
        "tasks": list(problem.task_names),
        "options": problem.option_values,
        "analyses": {o.name: ("skipped: " + o.skipped) if o.skipped else [p.name for p in o.files] for o in outcomes},
        "notes": data.notes,
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return index


def skipped(index: Path) -> dict[str, str]:
    """The analyses a written report skipped, with their reasons (read from ``report.json``)."""
    summary = json.loads((index.parent / "report.json").read_text())
    return {
        name: value[len("skipped: ") :]
        for name, value in summary["analyses"].items()
        if isinstance(value, str) and value.startswith("skipped: ")
    }


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table.sortable { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
p.caption { font-weight: 600; margin: 1em 0 0.3em 0; font-size: 0.9em; }
table.sortable th { cursor: pointer; background: #f3f3f3; border-bottom: 2px solid #999; padding: 0.3em 0.6em; }
table.sortable th[data-order=asc]::after { content: " ▲"; } table.sortable th[data-order=desc]::after { content: " ▼"; }
table.sortable td { padding: 0.25em 0.6em; border-bottom: 1px solid #e5e5e5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, p.note, p.desc { font-size: 0.85em; color: #555; }
.files { font-size: 0.8em; color: #666; } .skipped li { margin: 0.3em 0; } code { background: #f5f5f5; }
"""

_HEAD_JS = """
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  window.__reportErrors.push(String(e.message || e));
  document.documentElement.setAttribute('data-js-errors', String(window.__reportErrors.length));
});
"""

_BODY_JS = """
(function () {
  function key(cell) {
    if (!cell) return null;
    var v = cell.getAttribute('data-sort');
    if (v !== null) return parseFloat(v);
    var t = cell.textContent.trim();
    return t === '' ? null : t.toLowerCase();
  }
  function compare(a, b) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    if (typeof a === 'number') return -1;
    if (typeof b === 'number') return 1;
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th, column) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('data-order') !== 'asc';
        table.querySelectorAll('thead th').forEach(function (o) { o.removeAttribute('data-order'); });
        th.setAttribute('data-order', ascending ? 'asc' : 'desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var c = compare(key(r.cells[column]), key(s.cells[column]));
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.setAttribute('data-sortable', 'ready');
  window.addEventListener('load', function () {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.setAttribute('data-images-total', String(images.length));
    document.body.setAttribute('data-images-decoded', String(decoded));
    document.body.setAttribute('data-images', decoded === images.length ? 'ok' : 'broken');
  });
})();
"""


def _files_line(outcome: Outcome) -> str:
    links = " · ".join(f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>' for p in outcome.files)
    return f'<p class="files">files: {links}</p>' if links else ""


def render_html(data: ProblemRuns, outcomes: list[Outcome], *, store_path: str) -> str:
    problem = data.problem
    title = f"mtlbench report: {problem.name} {'_'.join(problem.task_names)}"
    options = ", ".join(f"{k}={v}" for k, v in problem.option_values.items()) or "default options"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style><script>{_HEAD_JS}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="desc">Problem options: {html.escape(options)}. Store: <code>{html.escape(store_path)}</code>. '
        f"{len(data.runs)} completed and {len(data.failed)} failed multi-task runs. Written "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Δm: 000 eq. 1, per run against the single-task "
        "test reference, in %, higher is better. Click a table header to sort.</p>",
    ]
    for note in data.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    done = [o for o in outcomes if o.result is not None]
    skipped_ = [o for o in outcomes if o.result is None]
    if done:
        parts.append("<nav><ul>")
        parts.extend(f'<li><a href="#{o.name}">{html.escape(o.title)}</a></li>' for o in done)
        if skipped_:
            parts.append('<li><a href="#skipped">Skipped analyses</a></li>')
        parts.append("</ul></nav>")
    for outcome in done:
        assert outcome.result is not None
        parts.append(f'<section id="{outcome.name}"><h2>{html.escape(outcome.title)}</h2>')
        parts.append(f'<p class="desc">{html.escape(outcome.description)}</p>')
        for figure in outcome.result.figures:
            encoded = base64.b64encode(figure.png.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(figure.caption)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            )
        for table in outcome.result.tables:
            parts.append(table.to_html())
        for note in outcome.result.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        parts.append(_files_line(outcome))
        parts.append("</section>")
    if skipped_:
        parts.append('<section id="skipped"><h2>Skipped analyses</h2><ul class="skipped">')
        for outcome in skipped_:
            parts.append(f"<li><b>{html.escape(outcome.title)}</b>: {html.escape(outcome.skipped or '')}</li>")
        parts.append("</ul></section>")
    parts.append(f"<script>{_BODY_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def default_report_dir(results: Path, problem: Problem) -> Path:
    return results.parent / "reports" / f"{problem.name}_{'_'.join(problem.task_names)}"


__all__ = ["Outcome", "default_report_dir", "run_analysis", "skipped", "write_report"]
