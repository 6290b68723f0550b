"""Single-task references only where Delta_m needs them: the rules that need them, runs and sweeps
without them (Delta_m None), and a zero reference metric refused before any multi-task training."""

from __future__ import annotations

import math
import textwrap

import pytest

from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.store.results import ResultsStore
from mtlbench.sweeps import Sweep, load_spec
from mtlbench.training import RunConfig
from mtlbench.training.selection import parse_selection
from mtlbench.training.trainer import Trainer

BASE = dict(
    problem="synthetic",
    tasks="T0_T1",
    problem_options={"train_size": 48, "eval_size": 24},
    epochs=3,
    batch_size=16,
    threads=1,
)


@pytest.mark.parametrize(
    ("rule", "needs"),
    [
        ("delta_m", True),
        ("delta_m_metrics", True),
        ("best_test:delta_m", True),
        ("best_test:delta_m_metrics", True),
        ("mean_metric:mae", False),
        ("val_loss", False),
        ("per_metric", False),
        ("last_test_epochs:2", False),
        ("best_test:val_loss", False),
        ("best_test:mean_metric:mae", False),
    ],
)
def test_only_the_delta_m_rules_need_references(rule, needs):
    assert parse_selection(rule).needs_delta_m is needs
    assert RunConfig(**BASE, selection=rule).resolved().needs_reference() is needs
    # a single-task reference run never needs one
    assert not RunConfig(**{**BASE, "tasks": "T0"}, selection=rule, kind="reference").resolved().needs_reference()


def test_a_plateau_schedule_on_val_delta_m_needs_references_whatever_the_rule():
    config = RunConfig(**BASE, selection="val_loss", scheduler="plateau", plateau_monitor="val_delta_m")
    assert config.resolved().needs_reference()
    assert not RunConfig(**BASE, selection="val_loss", scheduler="plateau").resolved().needs_reference()


def test_a_delta_m_run_without_reference_is_a_one_line_error_naming_the_command(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    with pytest.raises(MissingDataError, match=r"^no single-task reference .*`mtlbench reference --problem synthetic"):
        Trainer(RunConfig(**BASE), store=store).run()
    assert len(store.runs()) == 0


def _total_val_loss(record: dict) -> float:
    return sum(record["val_losses"].values())


def test_runs_selected_otherwise_train_without_references_and_store_no_delta_m(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    # mean validation MAE (lower is better): the score is minus the mean over tasks of the selected epoch
    result = Trainer(RunConfig(**BASE, selection="mean_metric:mae"), store=store).run()
    assert result.status == "completed"
    assert result.val_delta_m is None and result.test_delta_m is None and result.test_delta_m_metrics is None
    record = result.history[result.best_epoch]
    maes = [record["val_metrics"][task]["mae"] for task in ("T0", "T1")]
    assert result.val_score == pytest.approx(-sum(maes) / 2)
    assert all(-sum(r["val_metrics"][t]["mae"] for t in ("T0", "T1")) / 2 <= result.val_score for r in result.history)
    stored = store.run(result.run_id)["summary"]
    assert stored["test_delta_m"] is None and stored["val_score"] == pytest.approx(result.val_score)

    # per_metric without references: minus the lowest summed validation loss over the epochs
    per_metric = Trainer(RunConfig(**BASE, selection="per_metric"), store=store).run()
    assert per_metric.val_delta_m is None and per_metric.test_delta_m is None
    assert per_metric.val_score == pytest.approx(-min(_total_val_loss(r) for r in per_metric.history))

    # last_test_epochs:2 without references: minus the mean summed validation loss of the last 2 epochs
    tail = Trainer(RunConfig(**BASE, selection="last_test_epochs:2"), store=store).run()
    assert tail.test_delta_m is None and tail.test_selected
    assert tail.val_score == pytest.approx(-sum(_total_val_loss(r) for r in tail.history[-2:]) / 2)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


SWEEP = """
name = "no_refs"
problem = "synthetic"
tasks = "T0_T1"
methods = ["unit_scal"]
search_seeds = 1
final_seeds = 2

[problem_options]
train_size = 48
eval_size = 24

[settings]
epochs = 1
batch_size = 16
threads = 1
selection = "mean_metric:mae"

[grid]
lr = [0.01, 0.001]

[references]
enabled = false
search_seeds = 1
final_seeds = 1
"""


def test_a_sweep_whose_rule_needs_no_delta_m_runs_without_references_and_reports_it_when_enabled(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(SWEEP))
    store = ResultsStore(tmp_path / "r.db")
    sweep = Sweep(load_spec(path), store, workers=1)
    assert not sweep.plan.needs_references and sweep.dry_run().notes == []
    report = sweep.run()
    (method,) = report.methods
    assert report.references == [] and method.selection.best is not None
    assert method.test_delta_m() == [] and all(not _finite(f.run.test_delta_m) for f in method.final)
    assert method.selection.score == max(s.score for s in method.selection.scores)

    # the same spec with [references] enabled: they train first, then Delta_m is reported
    path.write_text(textwrap.dedent(SWEEP).replace("enabled = false", "enabled = true"))
    other = ResultsStore(tmp_path / "other.db")
    report = Sweep(load_spec(path), other, workers=1).run()
    assert len(report.references) == 2
    assert len(report.methods[0].test_delta_m()) == 2

    # a Delta_m rule keeps requiring them
    path.write_text(textwrap.dedent(SWEEP).replace('selection = "mean_metric:mae"', 'selection = "delta_m"'))
    empty = ResultsStore(tmp_path / "empty.db")
    with pytest.raises(MissingDataError, match=r"no single-task reference for T0 .*enable \[references\]"):
        Sweep(load_spec(path), empty, workers=1).run()
    assert len(empty.runs()) == 0


# ---------------------------------------------------------------------------- a zero reference metric
def _put_references(store: ResultsStore, values: dict[str, float]) -> None:
    from mtlbench.problems import create_problem

    key = create_problem("synthetic", ["T0", "T1"], **BASE["problem_options"]).reference_config()
    for split in ("val", "test"):
        for task, value in values.items():
            store.put_reference(key, split=split, task=task, metric="mae", value=value, n_seeds=1, run_ids=[])


def test_check_reference_names_the_zero_metric():
    from mtlbench.metrics import check_reference

    check_reference({"T0": {"mae": 0.5, "acc": 1e-12}})  # tiny but not zero: fine
    with pytest.raises(UserInputError, match=r"^p: the single-task reference of T1/acc is 0, .*train the reference"):
        check_reference({"T0": {"mae": 0.5}, "T1": {"mae": 0.2, "acc": 0.0}}, "p")


@pytest.mark.parametrize("rule", ["delta_m", "mean_metric:mae"])
def test_a_zero_reference_stops_a_run_before_training(tmp_path, rule):
    store = ResultsStore(tmp_path / "r.db")
    _put_references(store, {"T0": 0.4, "T1": 0.0})
    with pytest.raises(UserInputError, match=r"^synthetic \(val\): the single-task reference of T1/mae is 0") as error:
        Trainer(RunConfig(**BASE, selection=rule), store=store, checkpoint_root=tmp_path / "ckpt").run()
    assert "\n" not in str(error.value)
    assert len(store.runs()) == 0 and not (tmp_path / "ckpt").exists()


def test_a_sweep_with_a_zero_stored_reference_stops_before_any_multi_task_run(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(SWEEP).replace('selection = "mean_metric:mae"', 'selection = "delta_m"'))
    store = ResultsStore(tmp_path / "r.db")
    _put_references(store, {"T0": 0.0, "T1": 0.3})
    sweep = Sweep(load_spec(path), store, workers=1)
    assert any("reference of T0/mae is 0" in note for note in sweep.dry_run().notes)
    with pytest.raises(UserInputError, match=r"sweep.toml: synthetic \(val\): the single-task reference of T0/mae "):
        sweep.run()
    assert len(store.runs()) == 0


def test_celeba_at_paper_scale_needs_none_of_its_40_references():
    from mtlbench.sweeps.plan import SweepPlan

    plan = SweepPlan(load_spec("celeba"), threads=1)
    assert len(plan.tasks) == 40 and plan.reference_groups == [] and not plan.needs_references
