"""The sweep's summary table labels its score column by the selection rule the methods were selected on."""

from __future__ import annotations

from mtlbench.cli.sweep import _print_report
from mtlbench.sweeps.plan import Candidate, CandidateScore, Selection
from mtlbench.sweeps.runner import MethodResult, SweepReport
from mtlbench.training.selection import score_label


def _method(name: str, rule: str, score: float) -> MethodResult:
    candidate = Candidate(0, {"lr": 0.001})
    selection = Selection(name, None, candidate, score, (CandidateScore(candidate, score, (score,), 0, 0),))
    return MethodResult(name, selection, [], rule)


def _printed(capsys, methods: list[MethodResult]) -> str:
    _print_report(SweepReport(spec=None, references=[], methods=methods))
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_score_labels_name_the_rule():
    assert score_label("delta_m") == "val Δm %"
    assert score_label("mean_metric:acc") == "val score (mean_metric:acc)"
    assert score_label("best_test:val_loss") == "val score (best_test:val_loss)"


def test_the_table_labels_the_score_column_by_the_rule(capsys):
    text = _printed(capsys, [_method("unit_scal", "mean_metric:acc", 0.8125)])
    assert "search val score (mean_metric:acc)" in text and "by mean val score (mean_metric:acc)" in text
    assert "val Δm %" not in text and "0.812" in text

    text = _printed(capsys, [_method("unit_scal", "delta_m", -1.5)])
    assert "search val Δm %" in text and "by mean val Δm," in text and "-1.500" in text

    # methods selected by different rules: each score carries its rule
    text = _printed(capsys, [_method("unit_scal", "delta_m", 2.0), _method("famo", "val_loss", -0.25)])
    assert "search val score (rule per method)" in text
    assert "2.000 (delta_m)" in text and "-0.250 (val_loss)" in text
