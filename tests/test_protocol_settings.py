"""Protocol settings: objective scale, selection rules, Delta_m variants, task lists, config hashes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.metrics import delta_m, delta_m_metrics
from mtlbench.problems import create_problem
from mtlbench.problems.base import parse_task_names, task_splits
from mtlbench.store.results import ResultsStore, config_hash
from mtlbench.training import RunConfig, Trainer
from mtlbench.training.selection import (
    best_epoch,
    epoch_score,
    mean_test_metrics,
    parse_selection,
    per_metric_epochs,
)
from mtlbench.training.trainer import Session

BASE = dict(problem="synthetic", tasks="T0_T1", epochs=3, batch_size=64, lr=1e-2, threads=1)


# ------------------------------------------------------------------------------------ config hashes
def test_a_stored_config_dict_hashes_the_same():
    # a config dict as stored before objective/selection existed (today's fields minus the new ones)
    old = {
        "problem": "synthetic",
        "tasks": ["T0", "T1"],
        "method": "unit_scal",
        "method_params": {},
        "problem_options": {},
        "lr": 0.01,
        "dropout": 0.0,
        "weight_decay": 0.0,
        "epochs": 3,
        "batch_size": 64,
        "optimizer": "adam",
        "momentum": 0.9,
        "scheduler": "exponential",
        "scheduler_gamma": 0.95,
        "step_size": 30,
        "plateau_monitor": "train_loss",
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "kind": "multi_task",
        "eval_batch_size": 256,
    }
    assert RunConfig.from_dict(old).to_dict() == old
    assert config_hash(RunConfig.from_dict(old).to_dict()) == config_hash(old)
    resolved = RunConfig(**{**BASE, "device": "cpu", "seed": 0}).resolved().to_dict()
    assert "objective" not in resolved and "selection" not in resolved
    changed = RunConfig(**{**BASE, "objective": "mean", "selection": "val_loss"}).resolved().to_dict()
    assert changed["objective"] == "mean" and changed["selection"] == "val_loss"


def test_single_task_runs_and_references_normalise_objective_and_selection():
    one = RunConfig(**{**BASE, "tasks": "T0", "objective": "mean"}).resolved()
    assert one.objective == "sum"
    ref = RunConfig(**{**BASE, "kind": "reference", "selection": "val_loss"}).resolved()
    assert ref.selection == "delta_m"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("objective", "avg", "sum, mean, mean_shared"),
        ("selection", "best", "delta_m, delta_m_metrics"),
        ("selection", "last_test_epochs:0", "positive number"),
        ("selection", "best_test:per_metric", "best_test takes one of"),
        ("selection", "mean_metric:acc", "no metric 'acc'"),
        ("plateau_monitor", "val_dm", "train_loss, last_batch, val_loss, val_delta_m"),
    ],
)
def test_bad_settings_are_one_line_errors(field, value, allowed):
    with pytest.raises(UserInputError) as info:
        RunConfig(**{**BASE, field: value}).resolved()
    message = str(info.value)
    assert "\n" not in message and repr(value) in message and allowed in message


# --------------------------------------------------------------------------------------- task lists
CELEBA_LIKE = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Bald", "Big_Lips", "Big", "Lips", "Eyebrows"]


def test_task_lists_split_by_known_names():
    assert parse_task_names("CL_RR", ["CL", "CR", "RL", "RR"], "p") == ["CL", "RR"]
    assert parse_task_names("CL,RR", ["CL", "CR", "RL", "RR"], "p") == ["CL", "RR"]
    assert parse_task_names("5_o_Clock_Shadow_Bald", CELEBA_LIKE, "p") == ["5_o_Clock_Shadow", "Bald"]
    assert parse_task_names("5_o_Clock_Shadow", CELEBA_LIKE, "p") == ["5_o_Clock_Shadow"]
    assert parse_task_names("Bald, Big_Lips", CELEBA_LIKE, "p") == ["Bald", "Big_Lips"]
    assert parse_task_names(["Big_Lips", "Bald"], CELEBA_LIKE, "p") == ["Big_Lips", "Bald"]
    assert parse_task_names("all", CELEBA_LIKE, "p") == CELEBA_LIKE
    assert sorted(task_splits("Bald_Big_Lips", CELEBA_LIKE)) == [["Bald", "Big", "Lips"], ["Bald", "Big_Lips"]]


def test_an_ambiguous_task_list_lists_its_readings():
    with pytest.raises(UserInputError) as info:
        parse_task_names("Bald_Big_Lips", CELEBA_LIKE, "celeba")
    message = str(info.value)
    assert "\n" not in message and "ambiguous" in message
    assert "Bald,Big,Lips" in message and "Bald,Big_Lips" in message


def test_unknown_task_names_are_errors():
    with pytest.raises(UserInputError, match="unknown task of p 'XX'"):
        parse_task_names("CL_XX", ["CL", "RR"], "p")
    with pytest.raises(UserInputError, match="twice"):
        parse_task_names("CL,CL", ["CL", "RR"], "p")
    with pytest.raises(UserInputError, match="malformed"):
        parse_task_names("CL,", ["CL", "RR"], "p")


# ---------------------------------------------------------------------------------- Delta_m variants
def test_delta_m_metrics_is_the_mean_over_all_metrics():
    directions = {"S": {"miou": True, "acc": True}, "D": {"abs": False}}
    reference = {"S": {"miou": 0.5, "acc": 0.8}, "D": {"abs": 2.0}}
    metrics = {"S": {"miou": 0.55, "acc": 0.76}, "D": {"abs": 1.5}}
    # relative changes: +10 %, -5 %, +25 %
    assert delta_m(metrics, reference, directions) == pytest.approx((2.5 + 25.0) / 2)
    assert delta_m_metrics(metrics, reference, directions) == pytest.approx((10.0 - 5.0 + 25.0) / 3)
    one_each = {"S": {"miou": True}, "D": {"abs": False}}
    same = ({"S": {"miou": 0.55}, "D": {"abs": 1.5}}, {"S": {"miou": 0.5}, "D": {"abs": 2.0}}, one_each)
    assert delta_m(*same) == pytest.approx(delta_m_metrics(*same))


# ------------------------------------------------------------------------------------ selection rules
DIRECTIONS = {"A": {"acc": True, "err": False}, "B": {"acc": True}}


def _record(epoch, dm, dmm, acc_a, err_a, acc_b, loss, test=None):
    record = {
        "epoch": epoch,
        "val_delta_m": dm,
        "val_delta_m_metrics": dmm,
        "val_metrics": {"A": {"acc": acc_a, "err": err_a}, "B": {"acc": acc_b}},
        "val_losses": {"A": loss, "B": loss},
    }
    if test is not None:
        record.update(test)
    return record


HISTORY = [
    _record(0, 1.0, 5.0, 0.50, 0.30, 0.70, 1.00),
    _record(1, 3.0, 2.0, 0.60, 0.20, 0.50, 0.90),
    _record(2, 2.0, 4.0, 0.80, 0.25, 0.60, 0.50),
    _record(3, -1.0, 1.0, 0.40, 0.10, 0.90, 0.70),
]


def test_single_epoch_rules_on_synthetic_records():
    assert best_epoch(parse_selection("delta_m"), HISTORY, DIRECTIONS) == 1
    assert best_epoch(parse_selection("delta_m_metrics"), HISTORY, DIRECTIONS) == 0
    # mean accuracy over A and B: 0.60, 0.55, 0.70, 0.65
    assert best_epoch(parse_selection("mean_metric:acc"), HISTORY, DIRECTIONS) == 2
    assert epoch_score(parse_selection("mean_metric:acc"), HISTORY[3], DIRECTIONS) == pytest.approx(0.65)
    assert best_epoch(parse_selection("val_loss"), HISTORY, DIRECTIONS) == 2
    # without a reference (Delta_m None) delta_m falls back to the summed validation loss
    no_ref = [dict(r, val_delta_m=None) for r in HISTORY]
    assert best_epoch(parse_selection("delta_m"), no_ref, DIRECTIONS) == 2


def test_lower_is_better_mean_metric_and_per_metric():
    assert best_epoch(parse_selection("mean_metric:err"), HISTORY, {"A": {"err": False}}) == 3
    assert per_metric_epochs(HISTORY, DIRECTIONS) == {("A", "acc"): 2, ("A", "err"): 3, ("B", "acc"): 3}


def test_test_selected_rules_on_synthetic_records():
    tests = [
        {"test_delta_m": 0.5, "test_metrics": {"A": {"acc": 0.1}}, "test_losses": {"A": 1.0}},
        {"test_delta_m": 4.0, "test_metrics": {"A": {"acc": 0.3}}, "test_losses": {"A": 2.0}},
        {"test_delta_m": 1.0, "test_metrics": {"A": {"acc": 0.5}}, "test_losses": {"A": 0.5}},
        {"test_delta_m": 2.0, "test_metrics": {"A": {"acc": 0.7}}, "test_losses": {"A": 0.7}},
    ]
    history = [dict(r, **t) for r, t in zip(HISTORY, tests, strict=True)]
    best_test = parse_selection("best_test:delta_m")
    assert best_test.test_selected and best_test.inner.kind == "delta_m"
    assert best_epoch(best_test, history, DIRECTIONS) == 1  # the best *test* Delta_m, not val (also 1 here)
    assert best_epoch(parse_selection("best_test:val_loss"), history, DIRECTIONS) == 2
    assert best_epoch(parse_selection("best_test:mean_metric:acc"), history, {"A": {"acc": True}}) == 3
    last = parse_selection("last_test_epochs:3")
    assert last.test_selected and last.epochs == 3
    assert [last.evaluates_test_at(e, 4) for e in range(4)] == [False, True, True, True]
    assert mean_test_metrics(history, 3)["A"]["acc"] == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    for rule in ("delta_m", "delta_m_metrics", "mean_metric:acc", "val_loss", "per_metric"):
        assert not parse_selection(rule).test_selected


# ---------------------------------------------------------------------- selection in the trainer
def _train(store, tmp_path, **overrides):
    config = RunConfig(**{**BASE, **overrides})
    return Trainer(config, store=store, checkpoint_root=tmp_path / "ckpt", require_reference=False).run()


def test_trainer_selection_rules_and_the_test_selected_flag(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    plain = _train(store, tmp_path, seed=1)
    assert not plain.test_selected
    val_losses = [sum(r["val_losses"].values()) for r in plain.history]
    assert plain.best_epoch == min(range(3), key=val_losses.__getitem__)
    last = _train(store, tmp_path, seed=1, selection="last_test_epochs:2")
    assert last.test_selected and last.best_epoch == 2
    assert [("test_metrics" in r) for r in last.history] == [False, True, True]
    for task, metrics in last.test_metrics.items():
        for name, value in metrics.items():
            pair = [last.history[e]["test_metrics"][task][name] for e in (1, 2)]
            assert value == pytest.approx(sum(pair) / 2)
    best_test = _train(store, tmp_path, seed=1, selection="best_test:val_loss")
    test_losses = [sum(r["test_losses"].values()) for r in best_test.history]
    assert best_test.test_selected and best_test.best_epoch == min(range(3), key=test_losses.__getitem__)
    per_metric = _train(store, tmp_path, seed=1, selection="per_metric")
    maes = {t: [r["val_metrics"][t]["mae"] for r in per_metric.history] for t in ("T0", "T1")}
    for task in ("T0", "T1"):
        assert per_metric.selected[task]["mae"]["epoch"] == min(range(3), key=maes[task].__getitem__)
    stored = store.run(last.run_id)
    assert stored["summary"]["test_selected"] is True and stored["summary"]["selection"] == "last_test_epochs:2"


# -------------------------------------------------------------------------------- objective scale
def _steps(config: RunConfig, steps: int = 4) -> list[torch.Tensor]:
    config = config.resolved()
    problem = create_problem(config.problem, config.tasks, **config.problem_options)
    problem.prepare()
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(config.seed))
    for _, batch in zip(range(steps), problem.batches("train", config.batch_size, shuffle=False), strict=False):
        session.step(batch)
    return [p.detach().clone() for p in [*session.model.parameters(), *session.method.parameters()]]


@pytest.mark.parametrize("method", ["unit_scal", "uw", "pcgrad", "mgda_ub", "cagrad", "imtl", "rlw_dirichlet"])
def test_mean_at_weight_decay_w_equals_sum_at_T_w_under_adam(method):
    """(g/T + w p) = (g + T w p)/T and Adam divides the scale out up to eps: the same parameters."""
    tasks = "T0_T1_T2"
    common = dict(BASE, tasks=tasks, method=method, lr=1e-3, seed=2, problem_options={"train_size": 256})
    mean = _steps(RunConfig(**common, objective="mean", weight_decay=1e-2))
    total = _steps(RunConfig(**common, objective="sum", weight_decay=3e-2))
    plain = _steps(RunConfig(**common, objective="sum", weight_decay=1e-2))
    moved = max(float((a - b).abs().max()) for a, b in zip(total, plain, strict=True))
    assert moved > 1e-6  # the weight decay matters at this scale ...
    for a, b in zip(mean, total, strict=True):  # ... and mean at w is sum at 3w, up to Adam's eps
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-6)  # eps: 1e-8 next to |g| ~ 1e-7 somewhere


def test_mean_changes_sgd_steps_by_one_over_T_and_mean_shared_only_the_encoder():
    common = dict(BASE, tasks="T0_T1", optimizer="sgd", momentum=0.0, lr=0.1, seed=3)
    start = _steps(RunConfig(**{**common, "lr": 1e-30}), steps=1)
    total = _steps(RunConfig(**common), steps=1)
    mean = _steps(RunConfig(**common, objective="mean"), steps=1)
    for s, a, b in zip(start, total, mean, strict=True):
        torch.testing.assert_close(b - s, (a - s) / 2, rtol=1e-4, atol=1e-7)
    config = RunConfig(**common, objective="mean_shared").resolved()
    problem = create_problem(config.problem, config.tasks)
    model = problem.build_model()
    n_shared = len(model.shared_parameters())
    shared_only = _steps(dataclasses.replace(config), steps=1)
    for index, (s, a, b) in enumerate(zip(start, total, shared_only, strict=True)):
        expected = (a - s) / 2 if index < n_shared else (a - s)
        torch.testing.assert_close(b - s, expected, rtol=1e-4, atol=1e-7)
    assert math.isfinite(float(shared_only[0].sum()))


# ------------------------------------------------------------------------------------------------ toy
def test_toy_objective_keeps_mean_as_default_and_scale_as_its_old_name(capsys):
    from mtlbench.cli.main import main
    from mtlbench.studies.toy import run_toy

    common = dict(method="sum", optimizer="sgd", lr=0.01, steps=200, record_every=None)
    assert run_toy(**common).final.tolist() == run_toy(**common, objective="mean").final.tolist()
    assert run_toy(**common, scale="sum").final.tolist() == run_toy(**common, objective="sum").final.tolist()
    assert run_toy(**common, objective="sum").final.tolist() != run_toy(**common).final.tolist()
    outputs = []
    for flag in ("--objective", "--scale"):
        assert main(["toy", "--optimizer", "sgd", "--lr", "5", "--steps", "300", flag, "sum", "--json"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert main(["toy", "--steps", "5", "--objective", "avg"]) == 2
    assert "objective='avg'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- store schema v3
def test_store_migrates_from_v2_and_stores_the_new_columns(tmp_path):
    import sqlite3

    from mtlbench.store import results as results_module

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
    for version in (0, 1):  # schema version 2 as the store wrote it
        results_module.MIGRATIONS[version](conn)
        conn.execute("INSERT INTO schema_version VALUES (?, 'then')", (version + 1,))
    old = {"problem": "synthetic", "tasks": ["T0", "T1"], "method": "unit_scal", "seed": 1}
    for kind, digest in (("multi_task", "a" * 16), ("reference", "b" * 16)):
        conn.execute(
            "INSERT INTO runs (config_hash, kind, problem, tasks, method, seed, status, config, provenance,"
            " started_at, updated_at, val_delta_m, summary) VALUES (?, ?, 'synthetic', 'T0_T1', 'unit_scal', 1,"
            " 'completed', ?, '{}', 'then', 'then', 1.5, '{\"val_delta_m\": 1.5}')",
            (digest, kind, results_module.dumps(old)),
        )
    conn.execute("INSERT INTO epochs VALUES (1, 0, 0.1, 1.0, 1.5, '{\"lr\": 0.1}', 'then')")
    conn.close()

    store = ResultsStore(path)
    assert store.schema_version == 3
    runs = store.runs()
    assert runs["selection"].tolist() == ["delta_m", "per_metric"] and runs["test_selected"].tolist() == [0, 0]
    assert runs["val_delta_m"].tolist() == [1.5, 1.5] and runs["val_delta_m_metrics"].isna().all()
    assert store.run(1)["epochs"] == [{"epoch": 0, "lr": 0.1}]
    # a new run fills the columns
    config = RunConfig(**{**BASE, "selection": "last_test_epochs:1", "epochs": 2}).resolved()
    result = Trainer(config, store=store, require_reference=False).run()
    row = store.runs(config_hash=config_hash(config.to_dict())).iloc[0]
    assert row["selection"] == "last_test_epochs:1" and row["test_selected"] == 1
    assert result.test_selected
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(epochs)")}
    assert "val_delta_m_metrics" in columns


def test_runs_with_a_reference_store_both_delta_m_variants(tmp_path):
    from mtlbench.training.references import train_references

    store = ResultsStore(tmp_path / "r.db")
    base = dict(BASE, epochs=2, seed=1)
    train_references(RunConfig(**base), seeds=[1], store=store)
    result = Trainer(RunConfig(**base, selection="delta_m_metrics"), store=store).run()
    for record in result.history:  # one metric per task: the two aggregations agree
        assert record["val_delta_m_metrics"] == pytest.approx(record["val_delta_m"])
    row = store.runs(method="unit_scal", kind="multi_task").iloc[0]
    assert row["test_delta_m_metrics"] == pytest.approx(result.test_delta_m)
    assert row["val_delta_m_metrics"] == pytest.approx(result.val_delta_m_metrics)
    assert row["selection"] == "delta_m_metrics" and row["test_selected"] == 0
    epochs = store.epochs(run_id=result.run_id)
    assert epochs["val_delta_m_metrics"].tolist() == pytest.approx([r["val_delta_m"] for r in result.history])


def test_sweeps_select_configurations_by_the_runs_rule(tmp_path):
    from mtlbench.sweeps.plan import Candidate, Group, StoredRun, select_method

    store = ResultsStore(tmp_path / "r.db")
    result = _train(store, tmp_path, seed=1, selection="val_loss")
    losses = [sum(r["val_losses"].values()) for r in result.history]
    assert result.val_score == pytest.approx(-min(losses))
    assert store.run(result.run_id)["summary"]["val_score"] == pytest.approx(result.val_score)
    plain = _train(store, tmp_path, seed=2)
    assert "val_score" not in store.run(plain.run_id)["summary"]  # default rule: summaries as before

    candidates = [Candidate(0, {"lr": 0.01}), Candidate(1, {"lr": 0.001})]
    for selection, expected in (("delta_m", 0), ("mean_metric:mae", 1)):
        base = RunConfig(**{**BASE, "selection": selection})
        group = Group("unit_scal", "multi_task", candidates, [1], [1], base, _resolve=lambda c, _: c.resolved())
        stored = {
            group.trial(candidates[0], 1).hash: StoredRun(1, "completed", val_delta_m=2.0, val_score=-0.5),
            group.trial(candidates[1], 1).hash: StoredRun(2, "completed", val_delta_m=1.0, val_score=-0.2),
        }
        assert select_method(group, stored).best.index == expected
