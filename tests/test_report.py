"""``mtlbench report`` / ``write_report``: every analysis with data, the skipped ones listed with their reason,
a clear error naming the store's contents when a problem has no runs, and the HTML checked in headless
Chromium (it loads without script errors, every embedded figure decodes, the tables sort)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtlbench.analysis.analyses import ANALYSES
from mtlbench.analysis.report import skipped, write_report
from mtlbench.cli.main import main
from mtlbench.errors import MissingDataError
from mtlbench.problems import create_problem
from mtlbench.store.results import ResultsStore
from mtlbench.training.diagnostics import summarize
from tests.test_analysis import add_reference, add_run

PROBLEM = create_problem("synthetic", ["T0", "T1"])


def _grad_extra(epoch: int) -> dict:
    def stats(center: float) -> dict:
        return summarize([center - 0.1, center, center + 0.1])

    return {
        "grad": {
            "steps": 3,
            "seconds": 0.05,
            "batch": {"cos_to_mean": stats(0.7 - 0.05 * epoch), "sum_norm": stats(2.0)},
            "mtl": {"cos": stats(0.1), "mag": stats(0.4), "conflict": stats(0.3)},
            "stl": {"cos": stats(0.2), "mag": stats(0.8), "conflict": stats(0.2)},
        }
    }


def full_store(path: Path) -> ResultsStore:
    """Runs that give every analysis data: two optimizers, weights, diagnostics, RotoGrad, fixed weights."""
    store = ResultsStore(path)
    add_reference(store)
    for seed in (1, 2, 3):
        add_run(store, "unit_scal", seed, (-2.0 - seed, -1.0), extra=[_grad_extra(e) for e in range(3)])
        add_run(store, "cagrad", seed, (1.0, seed - 1.0), weights=[(1.4, 0.6), (1.2, 0.8), (1.1, 0.9)])
        add_run(store, "rotograd", seed, (0.5, 0.5 * seed), extra=[{"rotation_loss": 10.0 / (e + 1)} for e in range(3)])
        add_run(store, "fixed_weights", seed, (0.0, seed), method_params={"weights": [1.1, 0.9]})
        add_run(store, "unit_scal", seed, (-9.0, -9.0 + seed), optimizer="sgd", val_delta_m=-20.0)
    add_run(store, "imtl", 1, (0.0, 0.0), status="failed")
    return store


def test_report_with_all_data_writes_every_analysis(tmp_path):
    store = full_store(tmp_path / "results.db")
    index = write_report(store, PROBLEM, tmp_path / "report")
    assert skipped(index) == {}
    folder = index.parent
    page = index.read_text()
    pngs = sorted(folder.glob("*.png"))
    assert {p.stem for p in pngs} == {
        "delta_m_boxplot",
        "weights_over_training",
        "weight_error",
        "grad_cos_to_mean",
        "grad_conflicts",
        "pareto_fronts",
        "rotation_loss",
    }
    assert all((folder / f"{p.stem}.pdf").stat().st_size > 0 for p in pngs)
    assert page.count('src="data:image/png;base64,') == len(pngs)
    for name in ("comparison", "significance", "statistics", "fixed_weights_comparison", "pareto_counts", "overhead"):
        assert {f"{name}.md", f"{name}.tex", f"{name}.csv"} <= {p.name for p in folder.iterdir()}
        assert f'id="table-{name}"' in page
    comparison = (folder / "comparison.csv").read_text()
    assert "Unit. Scal." in comparison and "CAGrad" in comparison
    overhead = (folder / "overhead.md").read_text()
    assert "| CAGrad | cpu | 3 | 200.0 |" in overhead  # (2 s train - 0 s diagnostics) / 10 steps
    assert "| Unit. Scal. | cpu | 3 | **95.0** |" in overhead  # (1 s - 0.05 s diagnostics) / 10 steps
    pareto = (folder / "pareto_counts.md").read_text()
    assert "| adam |" in pareto and "| sgd |" in pareto  # grouped by optimizer, as 001 Table 2


def test_report_lists_skipped_analyses_and_the_cli_names_them(tmp_path, capsys):
    db = tmp_path / "results.db"
    store = ResultsStore(db)
    for seed in (1, 2):
        add_run(store, "unit_scal", seed, (0.0, 0.0))  # no reference, no weights, no diagnostics
    index = write_report(store, PROBLEM, tmp_path / "report")
    reasons = skipped(index)
    assert set(reasons) == set(ANALYSES) - {"runs", "pareto", "overhead"}
    assert "mtlbench reference --problem synthetic --tasks T0_T1" in reasons["comparison"]
    assert "--grad-metrics" in reasons["gradients"]
    page = index.read_text()
    assert 'id="skipped"' in page and "Δm box plot" in page.split('id="skipped"')[1]
    assert main(["report", "-p", "synthetic", "-t", "T0_T1", "--results", str(db), "--out", str(tmp_path / "r2")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("index.html")
    assert "skipped comparison: no single-task test reference" in captured.err


def test_a_problem_without_runs_names_what_the_store_has(tmp_path, capsys):
    db = tmp_path / "results.db"
    store = ResultsStore(db)
    add_run(store, "unit_scal", 1, (0.0, 0.0))
    with pytest.raises(MissingDataError, match=r"no multi-task runs of synthetic T0_T2 .*synthetic T0_T1"):
        write_report(store, create_problem("synthetic", ["T0", "T2"]), tmp_path / "report")
    assert main(["report", "-p", "synthetic", "-t", "T2_T3", "--results", str(db)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "synthetic T0_T1 (multi_task, completed): 1" in error


def test_analysis_command_writes_one_analysis(tmp_path, capsys):
    db = tmp_path / "results.db"
    full_store(db)
    out = tmp_path / "one"
    assert (
        main(["analysis", "statistics", "-p", "synthetic", "-t", "T0_T1", "--results", str(db), "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "| Unit. Scal. | 3 |" in printed and str(out / "statistics.tex") in printed
    assert sorted(p.name for p in out.iterdir()) == ["statistics.csv", "statistics.md", "statistics.tex"]
    assert (
        main(["analysis", "rotation", "-p", "synthetic", "-t", "T0_T1", "--results", str(db), "--out", str(out)]) == 0
    )
    empty = tmp_path / "empty.db"
    add_run(ResultsStore(empty), "unit_scal", 1, (0.0, 0.0))
    assert main(["analysis", "rotation", "-p", "synthetic", "-t", "T0_T1", "--results", str(empty)]) == 2
    assert "rotation: no RotoGrad runs" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ Chromium
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _dump_dom(browser: str, page: Path) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # needed as root (CI containers)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_html_report_loads_in_headless_chromium_with_every_figure_decoded(tmp_path):
    browser = _chromium()
    assert browser is not None
    index = write_report(full_store(tmp_path / "results.db"), PROBLEM, tmp_path / "report")
    figures = len(list(index.parent.glob("*.png")))
    # a copy that clicks the Δm header of the comparison table twice (ascending, then descending)
    probe = index.with_name("probe.html")
    script = """<script>window.addEventListener('load', function () {
      var table = document.getElementById('table-comparison');
      var th = Array.prototype.filter.call(table.tHead.rows[0].cells, function (c) {
        return c.textContent === 'Δm (%)'; })[0];
      var column = th.cellIndex, values = function () { return Array.prototype.map.call(table.tBodies[0].rows,
        function (r) { return r.cells[column].getAttribute('data-sort'); }).join(','); };
      th.click(); document.body.setAttribute('data-asc', values());
      th.click(); document.body.setAttribute('data-desc', values());
    });</script></body>"""
    probe.write_text(index.read_text().replace("</body>", script))
    dom = _dump_dom(browser, probe)
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert "data-js-errors" not in re.search(r"<html([^>]*)>", dom).group(1)
    assert attributes["data-sortable"] == "ready"
    assert attributes["data-images"] == "ok"
    assert int(attributes["data-images-total"]) == int(attributes["data-images-decoded"]) == figures == 7
    ascending = [float(v) for v in attributes["data-asc"].split(",")]
    assert ascending == sorted(ascending) and len(ascending) == 4
    assert [float(v) for v in attributes["data-desc"].split(",")] == ascending[::-1]
    # the report itself (no probe) loads cleanly too
    assert 'data-images="ok"' in _dump_dom(browser, index)
    summary = json.loads((index.parent / "report.json").read_text())
    assert summary["tasks"] == ["T0", "T1"]
