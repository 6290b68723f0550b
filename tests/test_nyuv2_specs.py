"""The NYUv2 sweep specs: MTAN/FAMO's and 001's settings at every scale; the smoke sweep runs on a fake tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtlbench.data import nyuv2
from mtlbench.store.results import ResultsStore
from mtlbench.sweeps.plan import SweepPlan
from mtlbench.sweeps.runner import Sweep
from mtlbench.sweeps.spec import load_spec

LR_001 = [0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001]


@pytest.mark.parametrize("scale", ["paper", "cpu", "smoke"])
def test_nyuv2_spec_is_the_mtan_famo_setup(scale: str) -> None:
    plan = SweepPlan(load_spec("nyuv2", scale), threads=1)
    for group in plan.method_groups:
        config = group.search_trials()[0].config
        assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-4, 0.0)
        assert (config.batch_size, config.eval_batch_size) == (2, 2)
        assert (config.scheduler, config.step_size, config.scheduler_gamma) == ("step", 100, 0.5)
        assert config.objective == "sum" and config.selection.startswith("last_test_epochs:")
        options = config.problem_options
        assert options["val_split"] == "none" and options["metric_reduction"] == "per_batch" and options["augment"]
        if scale == "paper":
            assert config.epochs == 200 and config.selection == "last_test_epochs:10"
            assert options["model"] == "segnet_mtan"
        if group.name == "cagrad":
            assert config.method_params["c"] == 0.4
        if group.name == "imtl":  # SegNet-MTAN has no shared representation: IMTL on the shared parameters
            assert config.method_params["space"] == "parameters"
    assert plan.tasks == ["S", "D", "N"]


@pytest.mark.parametrize("name", ["nyuv2_001", "nyuv2_001_sgd", "nyuv2_001_deeplab"])
@pytest.mark.parametrize("scale", ["paper", "cpu", "smoke"])
def test_nyuv2_001_spec_is_001s_setup(name: str, scale: str) -> None:
    plan = SweepPlan(load_spec(name, scale), threads=1)
    lrs = set()
    for group in plan.method_groups:
        for trial in group.search_trials():
            config = trial.config
            lrs.add(config.lr)
            assert config.optimizer == ("sgd" if name.endswith("sgd") else "adam")
            assert (config.batch_size, config.weight_decay) == (8, 1e-5)
            assert (config.scheduler, config.step_size, config.scheduler_gamma) == ("step", 100, 0.5)
            assert (config.objective, config.selection) == ("sum", "delta_m_metrics")
            assert config.problem_options["val_split"] == "libmtl"
            assert config.problem_options["metric_reduction"] == "global"
            if group.name == "uw":
                assert config.method_params["form"] == "libmtl"
            if group.name == "rlw_normal":
                assert config.method_params["weights_sum"] == "one"
            model = "deeplabv3plus" if name.endswith("deeplab") else "segnet"
            assert config.problem_options["model"] == (model if scale == "paper" else "aspp")
    if scale == "paper":
        assert sorted(lrs, reverse=True) == LR_001
        assert [g.name for g in plan.method_groups] == ["unit_scal", "uw", "rlw_normal", "pcgrad", "cagrad", "imtl"]
        # 6 methods x 10 lrs x 3 seeds = 001's 180 runs per optimizer
        assert sum(len(g.search_trials()) for g in plan.method_groups) == 180
        assert all(g.search_trials()[0].config.epochs == 200 for g in plan.method_groups)


def _fake_tree(root: Path) -> None:
    """4 training and 2 test images of 16 x 24: enough pixels for every normal fraction of a reference to be > 0."""
    rng = np.random.default_rng(0)
    for split, n in {"train": 4, "val": 2}.items():
        for i in range(n):
            normal = rng.normal(size=(16, 24, 3))
            arrays = {
                "image": rng.integers(0, 256, (16, 24, 3)) / 255.0,
                "label": rng.integers(-1, 13, (16, 24)).astype(np.float64),
                "depth": rng.uniform(0.0, 5.0, (16, 24, 1)),
                "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True),
            }
            for key, array in arrays.items():
                (root / split / key).mkdir(parents=True, exist_ok=True)
                np.save(root / split / key / f"{i}.npy", array)


def test_the_smoke_sweep_runs_and_is_test_selected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    _fake_tree(tmp_path / "raw")
    nyuv2.prepare(tmp_path / "raw")
    store = ResultsStore(tmp_path / "runs.db")
    report = Sweep(load_spec("nyuv2", "smoke"), store, workers=1).run()
    runs = store.runs()
    assert report.launched == len(runs) and (runs["status"] == "completed").all()
    # the methods' runs averaged their last test epoch(s); the references select per metric
    methods = runs[runs["kind"] == "multi_task"]
    assert (methods["selection"] == "last_test_epochs:1").all() and (methods["test_selected"] == 1).all()
    assert {method.method for method in report.methods} == {"unit_scal", "cagrad", "imtl"}
    for method in report.methods:
        assert [final.seed for final in method.final] == [1, 2]
        assert all(set(final.test_metrics) == {"S", "D", "N"} for final in method.final)
        assert all(len(method.test_delta_m()) == 2 for method in report.methods)  # against the references


@pytest.mark.parametrize("scale", ["paper", "cpu", "smoke"])
def test_the_standin_spec_runs_001s_protocol_on_generated_scenes(scale: str) -> None:
    standin = SweepPlan(load_spec("nyuv2_standin", scale), threads=1)
    real = SweepPlan(load_spec("nyuv2_001", scale), threads=1)
    assert standin.tasks == ["S", "D", "N"]
    keys = ("weight_decay", "scheduler", "step_size", "objective", "selection", "lr")
    keys += ("epochs", "batch_size") if scale == "paper" else ()  # the smoke scale trains longer
    for ours, theirs in zip(standin.method_groups, real.method_groups, strict=False):
        assert ours.name == theirs.name
        a, b = ours.search_trials()[0].config, theirs.search_trials()[0].config
        assert a.problem_options["preset"] == "NYUv2" and a.method_params == b.method_params
        assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}
