"""The studies of Kurin et al. (003): specs as 003 ran them, runtime ratios, claims, curves, ||sum g_i||."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mtlbench.analysis.claims import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from mtlbench.errors import MissingDataError
from mtlbench.studies import STUDIES
from mtlbench.studies.base import StudyContext
from mtlbench.studies.p003_celeba import in_range
from mtlbench.studies.p003_cityscapes import pcgrad_cheaper
from mtlbench.studies.p003_common import (
    SEVEN,
    cheapest,
    epoch_seconds,
    mean_test_accuracy,
    not_beaten,
    time_ratios,
)
from mtlbench.studies.p003_regularization import curve_summary
from mtlbench.studies.sweeps import study_spec
from mtlbench.sweeps.plan import SweepPlan
from mtlbench.training.diagnostics import GradientDiagnostics

STUDIES_003 = ("003-mnist", "003-celeba", "003-cityscapes", "003-regularization", "003-metaworld")


def test_the_003_studies_are_registered() -> None:
    assert set(STUDIES_003) <= set(STUDIES.names())


# ------------------------------------------------------------------------------------------ the specs
def _candidates(spec_name: str, scale: str = "paper") -> dict[str, list[dict]]:
    plan = SweepPlan(study_spec(spec_name, scale), threads=1)
    return {g.name: [dict(c.values) for c in g.candidates] for g in plan.method_groups}


def test_mnist_003_is_003s_script() -> None:
    """003 scripts/mnist.sh: lr 0.01, decay 0.95, 100 epochs, 10 runs; 003 4.1.1: dropout 0.5, no l2, CL_CR."""
    spec = study_spec("mnist_003", "paper")
    assert spec.tasks == "CL_CR" and tuple(spec.methods) == SEVEN and spec.final_seeds == 10
    assert spec.settings["epochs"] == 100 and spec.settings["selection"] == "mean_metric:acc"
    assert spec.settings["objective"] == "sum" and spec.settings["scheduler_gamma"] == 0.95
    for candidates in _candidates("mnist_003").values():
        assert candidates == [{"lr": 0.01, "dropout": 0.5, "weight_decay": 0.0}]


def test_city_003_weight_decay_per_method_and_per_metric_selection() -> None:
    """003 scripts/cityscapes.sh: wd 1e-5 for baseline, IMTL, PCGrad only; lr 5e-4, no decay; head dropout 0.5."""
    spec = study_spec("city_003", "paper")
    assert spec.settings["selection"] == "per_metric" and spec.settings["scheduler"] == "none"
    assert spec.problem_options["preset"] == "R50" and spec.final_seeds == 3
    for method, candidates in _candidates("city_003").items():
        wd = 1e-5 if method in ("unit_scal", "imtl", "pcgrad") else 0.0
        assert candidates == [{"lr": 0.0005, "dropout": 0.5, "weight_decay": wd}], method


def test_celeba_reg_003_is_unregularised_and_records_the_summed_gradient() -> None:
    spec = study_spec("celeba_reg_003", "paper")
    assert spec.problem_options["dropout_layout"] == "none" and spec.settings["grad_metrics_every"] == 100
    lrs = {m: c[0]["lr"] for m, c in _candidates("celeba_reg_003").items()}
    assert lrs == {m: (5e-4 if m in ("imtl", "mgda_ub") else 1e-3) for m in SEVEN}
    assert all(c[0]["weight_decay"] == 0.0 for c in _candidates("celeba_reg_003").values())


def test_stand_ins_keep_each_studys_dropout_layout_and_sizes() -> None:
    """Without CelebA, synthetic_attributes runs with the study's layout; the smoke sizes apply only to it."""
    celeba = STUDIES["003-celeba"]()
    spec, notes = celeba.spec_for(celeba.sweeps[0], "smoke")
    assert spec.problem == "synthetic_attributes" and notes and "synthetic_attributes" in notes[0]
    assert spec.problem_options["dropout_layout"] == "kurin" and spec.problem_options["train_size"] == 64
    assert len(spec.methods) == 12
    regularization = STUDIES["003-regularization"]()
    layouts = {
        sweep.label: regularization.spec_for(sweep, "smoke")[0].problem_options["dropout_layout"]
        for sweep in regularization.sweeps
    }
    assert layouts == {"ablation": "none", "l2": "none", "l2+": "none", "Reg": "kurin"}
    grids = {s.label: regularization.spec_for(s, "cpu")[0].grid["weight_decay"] for s in regularization.sweeps}
    assert grids == {"ablation": [0.0], "l2": [1e-4], "l2+": [2e-3], "Reg": [1e-3]}
    city = STUDIES["003-cityscapes"]()
    spec, _ = city.spec_for(city.sweeps[0], "cpu")
    assert spec.problem == "synthetic_scenes" and spec.settings["selection"] == "per_metric"
    assert spec.problem_options["n_images"] == 300 and spec.problem_options["preset"] == "R50"


# ------------------------------------------------------------------------------------------ runtime
def test_epoch_seconds_leave_out_the_diagnostics_and_ratios_divide_by_unit_scal() -> None:
    records = [
        {"train_seconds": 3.0, "seconds": 4.0, "extra": {"grad": {"seconds": 1.0}}},
        {"train_seconds": 4.0, "seconds": 5.0, "extra": {}},
        {"seconds": 9.0},  # written before train_seconds existed
    ]
    assert epoch_seconds(records) == pytest.approx((2.0 + 4.0 + 9.0) / 3)
    assert epoch_seconds([]) is None
    ratios = time_ratios({"unit_scal": {1: 2.0, 2: 4.0}, "pcgrad": {1: 30.0, 2: 36.0}})
    assert ratios["pcgrad"] == {1: 10.0, 2: 12.0} and ratios["unit_scal"] == {1: 2 / 3, 2: 4 / 3}
    assert time_ratios({"pcgrad": {1: 1.0}}) == {}


def test_runtime_claims_fail_only_when_a_ci_lies_outside_the_range() -> None:
    slow = {1: 1.4, 2: 1.6, 3: 1.5}
    assert cheapest({"unit_scal": {1: 1.0}, "imtl": slow, "rlw_normal": {1: 0.95, 2: 0.93}}).verdict == HOLDS
    assert cheapest({"unit_scal": {1: 1.0}, "imtl": {1: 0.7, 2: 0.72, 3: 0.71}}).verdict == DOES_NOT_HOLD
    # a mean below the range whose CI reaches into it: timing noise, not a verdict
    assert cheapest({"unit_scal": {1: 1.0}, "rlw": {1: 0.5, 2: 1.1}}).verdict == INCONCLUSIVE
    assert cheapest({"unit_scal": {1: 1.0}, "imtl": {1: 0.5}}).verdict == INCONCLUSIVE  # one seed: no CI
    assert cheapest({"unit_scal": {1: 1.0}, "imtl": {1: 0.5, 2: 0.6}}).verdict == INCONCLUSIVE  # two: too few
    assert cheapest({"unit_scal": {1: 1.0}}).verdict == INCONCLUSIVE
    ranges = ("mgda_ub", "imtl", "graddrop")
    inside = {"mgda_ub": {1: 1.1, 2: 1.2}, "imtl": {1: 2.5, 2: 2.6}, "graddrop": {1: 1.0, 2: 1.0}}
    assert in_range(inside, ranges, 1.05, 2.4).verdict == HOLDS  # 1.05-2.4 widened by 10 %
    outside = {**inside, "imtl": {1: 3.0, 2: 3.1, 3: 3.05}}
    assert in_range(outside, ranges, 1.05, 2.4).verdict == DOES_NOT_HOLD
    assert in_range({"mgda_ub": {1: 1.1}}, ranges, 1.05, 2.4).verdict == INCONCLUSIVE  # two not timed
    assert pcgrad_cheaper({"pcgrad": {1: 1.3, 2: 1.3, 3: 1.3}, **inside})[0] == DOES_NOT_HOLD  # above graddrop's
    assert pcgrad_cheaper({"pcgrad": {1: 1.3, 2: 1.3}, **inside})[0] == INCONCLUSIVE  # two seeds: no CI to judge
    assert pcgrad_cheaper({"pcgrad": {1: 1.0, 2: 1.3}, **inside})[0] == INCONCLUSIVE  # mean above, CIs touch
    assert pcgrad_cheaper({"pcgrad": {1: 0.9, 2: 0.95}, **inside})[0] == HOLDS
    assert pcgrad_cheaper({"pcgrad": {1: 5.0, 2: 5.1, 3: 5.0}, **inside})[0] == DOES_NOT_HOLD


# ------------------------------------------------------------------------------------------ accuracy
def _report(finals: dict[str, dict[int, dict]]) -> SimpleNamespace:
    methods = []
    for method, by_seed in finals.items():
        final = [
            SimpleNamespace(seed=s, run=SimpleNamespace(status="completed"), test_metrics=m) for s, m in by_seed.items()
        ]
        methods.append(SimpleNamespace(method=method, final=final))
    return SimpleNamespace(methods=methods)


def test_mean_test_accuracy_averages_the_tasks_of_each_seed() -> None:
    report = _report({"imtl": {1: {"A": {"acc": 0.8}, "B": {"acc": 0.6}}, 2: {"A": {"acc": 0.9}, "B": {"loss": 1}}}})
    assert mean_test_accuracy(report, "imtl") == {1: pytest.approx(0.7)}  # seed 2 lacks B's accuracy


def test_no_method_beats_unit_scal_is_a_non_superiority_test() -> None:
    seeds = range(12)
    base = {s: 0.90 + 0.001 * ((s * 7) % 5) for s in seeds}
    close = {s: v + 0.0005 * (-1) ** s for s, v in base.items()}
    better = {s: v + 0.02 + 0.0005 * (-1) ** s for s, v in base.items()}
    assert not_beaten({"unit_scal": base, "imtl": close}, 0.005).verdict == HOLDS
    check = not_beaten({"unit_scal": base, "imtl": close, "pcgrad": better}, 0.005)
    assert check.verdict == DOES_NOT_HOLD and "pcgrad: does not hold" in check.detail
    few = not_beaten({"unit_scal": {1: 0.9}, "imtl": {1: 0.95}}, 0.005)
    assert few.verdict == INCONCLUSIVE
    # per metric (keys method/metric), each with its own margin, the baseline read per metric
    values = {"unit_scal/S.miou": base, "imtl/S.miou": close, "unit_scal/D.abs_err": base, "imtl/D.abs_err": better}
    per_metric = not_beaten(values, {"S.miou": 0.005, "D.abs_err": 0.05})
    assert per_metric.verdict == HOLDS and "imtl/D.abs_err: holds" in per_metric.detail
    assert not_beaten(values, {"S.miou": 0.005, "D.abs_err": 0.001}).verdict == DOES_NOT_HOLD


# ------------------------------------------------------------------------------------------ Figs. 5/6
def _record(acc: float, norm: float | None) -> dict:
    grad = {} if norm is None else {"grad": {"batch": {"sum_norm": {"mean": norm}}}}
    return {"val_metrics": {"A": {"acc": acc + 0.1}, "B": {"acc": acc - 0.1}}, "extra": grad}


def test_curve_summary_peak_overfitting_and_summed_gradient_norm() -> None:
    records = [_record(a, n) for a, n in [(0.5, 4.0), (0.7, 3.0), (0.7, 2.0), (0.6, 1.0), (0.55, 1.5)]]
    summary = curve_summary(records)
    assert summary["peak_val_acc"] == pytest.approx(0.7) and summary["peak_epoch"] == 2  # ties: the earlier
    assert summary["overfit_drop"] == pytest.approx(0.15)
    assert summary["sum_norm_last"] == 1.5 and summary["sum_norm_early"] == pytest.approx(3.5)  # 2 of 5 epochs
    assert "sum_norm_last" not in curve_summary([_record(0.5, None)])


def test_diagnostics_record_the_norm_of_the_summed_task_gradients() -> None:
    """003 Fig. 6: ||sum_i grad L_i|| on the shared parameters; closed form for squared losses of a linear map."""
    torch.manual_seed(0)
    x, w = torch.randn(6, 3), torch.nn.Parameter(torch.randn(3))
    targets = torch.randn(3, 6)
    losses = torch.stack([((x @ w - y) ** 2).mean() for y in targets])
    recorder = GradientDiagnostics(every=1)
    recorder.observe(losses, None, SimpleNamespace(size=0), [], [w])
    expected = sum(2 / 6 * x.T @ (x @ w.detach() - y) for y in targets)
    value = recorder.summary()["batch"]["sum_norm"]["mean"]
    assert value == pytest.approx(float(expected.norm()), rel=1e-5)
    assert w.grad is None  # no interference with training


# ------------------------------------------------------------------------------------------ Metaworld
def test_metaworld_is_listed_until_the_problem_exists(tmp_path) -> None:
    study = STUDIES["003-metaworld"]()
    outcome = study.execute(StudyContext("smoke", tmp_path / "r.db", tmp_path / "out"))
    assert outcome.cell("problem_registered").ours == 0.0
    assert all(r.verdict == INCONCLUSIVE for r in outcome.claims)
    assert all(r.ours is None for r in outcome.cells if r.cell.key != "problem_registered")
    assert outcome.cell("MT50/unit_scal/run_hours").cell.published.value == 15.0
    with pytest.raises(MissingDataError, match="needs the Metaworld problem") as error:
        study.execute(StudyContext("cpu", tmp_path / "r.db", tmp_path / "out"))
    assert "\n" not in str(error.value)


def test_published_runtime_factors_come_from_003s_text() -> None:
    cells = {c.key: c.published for c in STUDIES["003-celeba"]().cells()}
    assert cells["CelebA/pcgrad/time_ratio"].value == 35.0
    assert cells["CelebA/rlw_normal/time_ratio"].value == 1.05
    assert cells["CelebA/imtl/time_ratio"].value is None and cells["CelebA/imtl/time_ratio"].text == "1.05-2.4"
    assert cells["CelebA/unit_scal/weight_decay"].value == 1e-3 and cells["CelebA/mgda_ub/weight_decay"].value == 1e-4
    assert cells["CelebA/cagrad/mean_acc"].value is None
    city = {c.key: c.published for c in STUDIES["003-cityscapes"]().cells()}
    assert (
        city["Cityscapes/pcgrad/time_ratio"].value == 1.3 and city["Cityscapes/graddrop/time_ratio"].text == "1.6-2.3"
    )
    assert not any(math.isfinite(p.value or math.nan) for k, p in city.items() if "/S." in k or "/D." in k)


def _regularization_verdicts(means: dict[str, dict[str, float]]) -> dict[str, str]:
    from mtlbench.studies.base import StudyOutcome

    study = STUDIES["003-regularization"]()
    declared = {c.key: c for c in study.claims()}
    verdicts: dict[str, str] = {}
    study._check(
        StudyOutcome("x", "003", "", "cpu"),
        lambda row, key: means.get(row, {}).get(key),
        lambda key, check: verdicts.__setitem__(declared[key].key, check.verdict),
    )
    return verdicts


def test_regularization_claims_on_known_means() -> None:
    """Figs. 5/6 as 003 describes them hold; a Unit. Scal. that peaks in its first epoch does not overfit."""
    means = {m: {"overfit_drop": 0.01, "peak_epoch": 5.0, "sum_norm_early": 5.0, "sum_norm_last": 2.0} for m in SEVEN}
    means["unit_scal"] = {"overfit_drop": 0.05, "peak_epoch": 3.0, "sum_norm_early": 10.0, "sum_norm_last": 1.0}
    means["mgda_ub"]["sum_norm_last"], means["imtl"]["sum_norm_last"] = 8.0, 9.0
    means["unit_scal l2"] = {"overfit_drop": 0.02}
    means["unit_scal l2+"] = {"overfit_drop": 0.01}
    means["unit_scal Reg"] = {"overfit_drop": 0.005}
    assert set(_regularization_verdicts(means).values()) == {HOLDS}
    means["pcgrad"]["sum_norm_last"] = 20.0  # PCGrad, not MGDA/IMTL, ends farthest from stationarity
    means["unit_scal Reg"]["overfit_drop"] = 0.03
    verdicts = _regularization_verdicts(means)
    assert verdicts["mgda_imtl_away"] == DOES_NOT_HOLD and verdicts["reg_further"] == DOES_NOT_HOLD
    means["unit_scal"]["peak_epoch"] = 1.0
    verdicts = _regularization_verdicts(means)
    assert verdicts["smtos_postpone_overfitting"] == INCONCLUSIVE and verdicts["l2_postpones"] == INCONCLUSIVE
