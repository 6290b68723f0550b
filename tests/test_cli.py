"""The CLI end to end on the synthetic problem, and its one-line errors (no tracebacks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlbench.cli.main import main

QUICK = ["--problem", "synthetic", "--tasks", "T0_T1", "--epochs", "2", "--threads", "1", "--no-progress"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_reference_then_train_then_evaluate(tmp_path, capsys):
    db = str(tmp_path / "results.db")
    code, out, _ = run(capsys, "reference", *QUICK, "--seeds", "1", "--results", db)
    assert code == 0 and "reference synthetic T0 (test, mean of 1 seeds): mae=" in out
    code, out, _ = run(capsys, "train", *QUICK, "--method", "unit_scal", "--seed", "3", "--results", db)
    assert code == 0 and "completed" in out and "test Δm" in out
    test_metrics = json.loads(out.strip().splitlines()[-1])["test_metrics"]
    assert set(test_metrics) == {"T0", "T1"}
    best = next(Path(tmp_path, "checkpoints").glob("*/best.pt"))
    code, out, _ = run(capsys, "evaluate", str(best), "--results", db, "--device", "cpu")
    evaluated = json.loads(out)
    assert code == 0 and evaluated["metrics"] == test_metrics and "delta_m" in evaluated


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--problem", "nope", "--tasks", "a"], "error: unknown problem 'nope'; choose one of:"),
        (["train", "--problem", "synthetic", "--tasks", "T0_Q"], "error: unknown task of synthetic 'Q'"),
        (["train", *QUICK, "--method", "bogus"], "error: unknown method 'bogus'"),
        (["train", *QUICK, "--lr", "-0.1"], "error: lr=-0.1 must be > 0"),
        (["train", *QUICK, "--dropout", "1.5"], r"error: dropout=1.5 must be in [0, 1)"),
        (["train", *QUICK, "--set", "weights"], "error: --set 'weights' is not of the form name=value"),
        (["train", *QUICK, "--method", "fixed_weights", "--set", "w=1"], "unknown hyperparameter of fixed_weights"),
        (["train", *QUICK], "mtlbench reference --problem synthetic --tasks T0_T1"),
        (["train", *QUICK, "--option", "colour=red"], "unknown option of problem synthetic 'colour'"),
        (["methods", "nope"], "error: unknown method 'nope'"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, capsys, args, message):
    if args[0] == "train":
        args = [*args, "--results", str(tmp_path / "r.db")]
    code, _, err = run(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_methods_and_problems_tables_list_the_registry(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0 and "unit_scal" in out and "fixed_weights" in out
    code, out, _ = run(capsys, "methods", "fixed_weights")
    assert code == 0 and "weights" in out and "section 3.5" in out
    code, out, _ = run(capsys, "problems")
    assert code == 0 and "synthetic" in out
