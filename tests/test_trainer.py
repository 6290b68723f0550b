"""Trainer: determinism, resume after a kill, failure recording, reference selection, Delta_m."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.metrics import delta_m
from mtlbench.store.results import ResultsStore
from mtlbench.training import RunConfig, Trainer
from mtlbench.training.references import train_references

BASE = dict(problem="synthetic", tasks="T0_T1", epochs=3, batch_size=64, lr=1e-2, threads=1)


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "results.db")


def _run(store, tmp_path, **overrides):
    config = RunConfig(**{**BASE, **overrides})
    return Trainer(config, store=store, checkpoint_root=tmp_path / "ckpt", require_reference=False).run()


def _history_numbers(result):
    return [(r["train_losses"], r["val_metrics"], r["weights"]) for r in result.history]


def test_same_seed_gives_identical_numbers_and_another_seed_does_not(tmp_path):
    a = Trainer(RunConfig(**BASE, seed=3), require_reference=False).run()
    b = Trainer(RunConfig(**BASE, seed=3), require_reference=False).run()
    c = Trainer(RunConfig(**BASE, seed=4), require_reference=False).run()
    assert _history_numbers(a) == _history_numbers(b)
    assert a.test_metrics == b.test_metrics
    assert _history_numbers(a) != _history_numbers(c)


class _Kill(Exception):
    pass


@pytest.mark.parametrize("method", ["unit_scal", "sum"])
def test_a_killed_run_resumes_to_the_same_numbers(tmp_path, store, method):
    uninterrupted = Trainer(RunConfig(**BASE, method=method, seed=1), require_reference=False).run()

    def kill_after_second_epoch(event):
        if event["event"] == "epoch_end" and event["epoch"] == 1:
            raise _Kill

    config = RunConfig(**BASE, method=method, seed=1)
    trainer = Trainer(
        config,
        store=store,
        checkpoint_root=tmp_path / "ckpt",
        require_reference=False,
        progress=kill_after_second_epoch,
    )
    with pytest.raises(_Kill):
        trainer.run()
    assert store.runs()["status"].tolist() == ["running"]
    resumed = Trainer(config, store=store, checkpoint_root=tmp_path / "ckpt", require_reference=False).run()
    assert resumed.status == "completed"
    assert _history_numbers(resumed) == _history_numbers(uninterrupted)
    assert resumed.test_metrics == uninterrupted.test_metrics
    runs = store.runs()
    assert len(runs) == 1 and runs["status"].tolist() == ["completed"]
    assert sorted(store.epochs(resumed.run_id)["epoch"].tolist()) == [0, 1, 2]
    assert (tmp_path / "ckpt" / trainer.config_hash() / "best.pt").exists()


def test_a_diverging_run_is_recorded_as_failed_and_nothing_else_is_touched(tmp_path, store):
    good = _run(store, tmp_path, seed=1)
    bad = _run(store, tmp_path, seed=2, lr=1e30)
    assert good.status == "completed"
    assert bad.status == "failed" and "non-finite" in bad.error
    runs = store.runs().set_index("id")
    assert runs.loc[bad.run_id, "status"] == "failed"
    assert runs.loc[good.run_id, "status"] == "completed"
    assert store.run(bad.run_id)["error"] == bad.error


def test_reference_runs_select_the_epoch_per_metric_and_store_the_mean(tmp_path, store):
    base = RunConfig(**{**BASE, "epochs": 4})
    refs = train_references(base, seeds=[1, 2], store=store, checkpoint_root=tmp_path / "ckpt")
    runs = store.runs(kind="reference")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    for task in ("T0", "T1"):
        selected = []
        for run_id in runs[runs["tasks"] == task]["id"]:
            run = store.run(int(run_id))
            history = store.epochs(int(run_id)).sort_values("epoch")
            val = history[f"val.{task}.mae"].tolist()
            chosen = run["summary"]["selected"][task]["mae"]
            assert chosen["epoch"] == int(torch.tensor(val).argmin())  # lower is better
            assert chosen["val"] == pytest.approx(min(val))
            selected.append(chosen)
        assert refs["val"][task]["mae"] == pytest.approx(sum(s["val"] for s in selected) / 2)
        assert refs["test"][task]["mae"] == pytest.approx(sum(s["test"] for s in selected) / 2)
    # a second call reuses the completed runs
    again = train_references(base, seeds=[1, 2], store=store, checkpoint_root=tmp_path / "ckpt")
    assert again == refs and len(store.runs(kind="reference")) == 4


def test_multi_task_delta_m_uses_the_matching_reference(tmp_path, store):
    train_references(RunConfig(**BASE), seeds=[1], store=store, checkpoint_root=tmp_path / "ckpt")
    config = RunConfig(**BASE, method="unit_scal", seed=5)
    result = Trainer(config, store=store, checkpoint_root=tmp_path / "ckpt").run()
    reference = store.reference({"problem": "synthetic", **result_options(config)}, ["T0", "T1"], "test")
    directions = {"T0": {"mae": False}, "T1": {"mae": False}}
    assert result.test_delta_m == pytest.approx(delta_m(result.test_metrics, reference, directions))
    best = max(result.history, key=lambda r: r["val_delta_m"])
    assert result.best_epoch == best["epoch"] and math.isfinite(result.val_delta_m)
    # another training size is another problem configuration: its reference is missing
    with pytest.raises(MissingDataError, match="mtlbench reference --problem synthetic --tasks T0_T1"):
        Trainer(RunConfig(**BASE, problem_options={"train_size": 256}), store=store).run()


def result_options(config):
    from mtlbench.problems import create_problem

    return create_problem(config.problem, config.tasks, **config.problem_options).option_values


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lr": -1.0}, "lr=-1.0 must be > 0"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'; choose one of: adam, adamw, sgd"),
        ({"tasks": "T0_X"}, "unknown task of synthetic 'X'"),
        ({"problem": "nope"}, "unknown problem 'nope'"),
        ({"method": "cagradd"}, "unknown method 'cagradd'"),
    ],
)
def test_bad_configurations_are_one_line_errors(override, message):
    with pytest.raises(UserInputError, match=message):
        RunConfig(**{**BASE, **override}).resolved()


@pytest.mark.parametrize(
    ("optimizer", "options"),
    [("adam", dict(weight_decay=1e-4)), ("adamw", dict(weight_decay=1e-2)), ("sgd", dict(momentum=0.9))],
)
def test_the_fused_optimizer_takes_the_steps_of_the_plain_one(optimizer, options, monkeypatch):
    from mtlbench.training import trainer

    config = RunConfig(**{**BASE, "optimizer": optimizer, **options}).resolved()
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(3)]
    fused_params = [torch.nn.Parameter(x.clone()) for x in start]
    plain_params = [torch.nn.Parameter(x.clone()) for x in start]
    fused = trainer.build_optimizer(config, fused_params)
    monkeypatch.setattr(trainer, "fused_supported", lambda parameters: False)
    plain = trainer.build_optimizer(config, plain_params)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for _ in range(20):
        grads = [torch.randn_like(x) for x in start]
        for params, opt in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for a, b, x in zip(fused_params, plain_params, start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert (a - x).abs().max() > 1e-3  # the steps moved the parameters


def test_fused_kernels_are_used_only_for_floating_point_parameters():
    from mtlbench.optim import fused_supported

    assert fused_supported([torch.zeros(2), torch.zeros(3, dtype=torch.float64)])
    assert not fused_supported([torch.zeros(2, dtype=torch.int64)])
    assert not fused_supported([])
