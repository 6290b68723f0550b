"""Analysis building blocks on known inputs: bootstrap CI, Welch and Mann–Whitney tests, power, Holm; 000's
fixed-weight extraction (EMA) against a hand computation; Pareto counting; LaTeX/Markdown tables; the
selection of each method's final setting; ``mtlbench fixed-weights``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtlbench.analysis import stats
from mtlbench.analysis.data import load_problem_runs, resolve_problem
from mtlbench.analysis.fixed_weights import ema, extract_fixed_weights
from mtlbench.analysis.pareto import pareto_counts, pareto_mask
from mtlbench.analysis.tables import Table, latex_escape
from mtlbench.cli.main import main
from mtlbench.errors import MissingDataError
from mtlbench.problems import create_problem
from mtlbench.store.results import ResultsStore

TASKS = ["T0", "T1"]


# ------------------------------------------------------------------------------------ fake stores
def add_run(
    store: ResultsStore,
    method: str,
    seed: int,
    gains: tuple[float, float],
    *,
    val_delta_m: float = 0.0,
    lr: float = 0.01,
    optimizer: str = "adam",
    weights: list[tuple[float, float]] | None = None,
    extra: list[dict] | None = None,
    status: str = "completed",
    method_params: dict | None = None,
    config_extra: dict | None = None,
) -> int:
    """A synthetic T0_T1 run whose test MAE is 1 - gain/100 on each task (the reference MAE is 1), so that the
    relative change of task i is exactly gains[i] % and Delta_m their mean."""
    config = {
        "problem": "synthetic",
        "tasks": TASKS,
        "method": method,
        "method_params": method_params or {},
        "problem_options": {},
        "lr": lr,
        "dropout": 0.0,
        "weight_decay": 0.0,
        "epochs": 3,
        "batch_size": 64,
        "optimizer": optimizer,
        "scheduler": "none",
        "scheduler_gamma": 1.0,
        "seed": seed,
        "device": "cpu",
        "threads": 1,
        "kind": "multi_task",
        **(config_extra or {}),
    }
    run_id = store.start_run(config, kind="multi_task", provenance={})
    n_epochs = len(weights) if weights else 3
    for epoch in range(n_epochs):
        record = {
            "epoch": epoch,
            "train_losses": {"T0": 1.0, "T1": 1.0},
            "val_metrics": {"T0": {"mae": 1.0}, "T1": {"mae": 1.0}},
            "val_delta_m": val_delta_m,
            "weights": dict(zip(TASKS, weights[epoch], strict=True)) if weights else None,
            "lr": lr,
            "seconds": 2.0,
            "train_seconds": 1.0 + (method != "unit_scal"),
            "steps": 10,
            "memory": {"peak_mb": 100.0, "kind": "cuda_allocated"},
            "extra": extra[epoch] if extra else {},
        }
        store.add_epoch(run_id, epoch, record)
    if status == "failed":
        store.fail_run(run_id, "RunFailedError: loss became non-finite (T0)")
        return run_id
    metrics = {task: {"mae": 1.0 - gain / 100} for task, gain in zip(TASKS, gains, strict=True)}
    store.finish_run(
        run_id, test_metrics=metrics, summary={"best_epoch": 0, "val_delta_m": val_delta_m, "test_delta_m": None}
    )
    return run_id


def add_reference(store: ResultsStore) -> None:
    key = create_problem("synthetic", TASKS).reference_config()
    for split in ("val", "test"):
        for task in TASKS:
            store.put_reference(key, split=split, task=task, metric="mae", value=1.0, n_seeds=1, run_ids=[])


# ------------------------------------------------------------------------------------- statistics
def test_bootstrap_ci_on_known_inputs():
    assert stats.bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0]))
    # two values: resampled means are 1 (p=1/4), 1.5 (1/2), 2 (1/4) -> the 95% CI is [1, 2]
    assert stats.bootstrap_ci([1.0, 2.0]) == (1.0, 2.0)
    sample = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    low, high = stats.bootstrap_ci(sample, n_resamples=4000)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(sample.size)  # normal theory
    assert low < sample.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert stats.bootstrap_ci(sample, n_resamples=500, seed=1) == stats.bootstrap_ci(sample, n_resamples=500, seed=1)


def test_welch_test_matches_a_hand_computation():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5  # 5/12, 2
    t = (2.5 - 6.0) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    result = stats.welch_test(a, b)
    assert result.statistic == pytest.approx(t)
    assert result.df == pytest.approx(df)
    from scipy.stats import t as student

    assert result.p_value == pytest.approx(2 * student.sf(abs(t), df))
    assert math.isnan(stats.welch_test([1.0], b).p_value)


def test_mann_whitney_exact_p_for_complete_separation():
    low, high = list(range(10)), list(range(10, 20))
    result = stats.mann_whitney(low, high)
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(2 / math.comb(20, 10))  # exact two-sided p


def test_power_and_minimal_detectable_effect():
    assert stats.welch_power(0.5, 64, 64) == pytest.approx(0.80, abs=0.005)  # Cohen's classic n = 64 per group
    assert stats.welch_power(0.0, 10, 10) == pytest.approx(0.05, abs=1e-6)  # no effect: the test's size
    d = stats.minimal_detectable_effect(10, 10)
    assert stats.welch_power(d, 10, 10) == pytest.approx(0.8, abs=1e-6)
    assert d == pytest.approx(1.32, abs=0.01)
    assert stats.minimal_detectable_effect(3, 3) > 2.5 > d  # few seeds: only huge effects are detectable
    assert math.isnan(stats.minimal_detectable_effect(1, 5))


def test_holm_and_describe():
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    described = stats.describe([3.0, 1.0, 2.0, 10.0])
    assert described == pytest.approx(
        {"min": 1.0, "max": 10.0, "median": 2.5, "std": np.std([3, 1, 2, 10], ddof=1), "mean": 4.0}
    )


# ---------------------------------------------------------------------------------- fixed weights
def test_fixed_weight_extraction_follows_000_by_hand():
    weights = [(1.5, 0.5), (1.0, 1.0), (0.4, 1.6)]  # per-epoch means, sum T = 2
    # normalised: (0.75, 0.25), (0.5, 0.5), (0.2, 0.8); EMA from the first value with beta 0.9:
    m1 = 0.9 * 0.75 + 0.1 * 0.5  # 0.725
    m2 = 0.9 * m1 + 0.1 * 0.2  # 0.6725
    np.testing.assert_allclose(ema(np.array([[0.75], [0.5], [0.2]]))[:, 0], [0.75, m1, m2])
    np.testing.assert_allclose(extract_fixed_weights(weights), [m2, 1 - m2])
    # a trajectory whose sums drift is renormalised per epoch: scaling an epoch changes nothing
    np.testing.assert_allclose(extract_fixed_weights([(3.0, 1.0), (5.0, 5.0), (0.2, 0.8)]), [m2, 1 - m2])


def test_fixed_weights_command_extracts_and_refuses_methods_without_weights(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.db")
    add_reference(store)
    trajectory = [(1.5, 0.5), (1.0, 1.0), (0.4, 1.6)]
    add_run(store, "cagrad", 2, (1.0, 2.0), val_delta_m=-1.0, weights=trajectory)
    first = add_run(store, "cagrad", 1, (1.0, 2.0), val_delta_m=-1.0, weights=trajectory)
    add_run(store, "cagrad", 1, (1.0, 2.0), val_delta_m=-9.0, lr=0.001, weights=[(1.0, 1.0)] * 3)
    add_run(store, "pcgrad", 1, (1.0, 2.0))
    db = str(tmp_path / "results.db")
    assert main(["fixed-weights", "--from", "cagrad", "-p", "synthetic", "-t", "T0_T1", "--results", db]) == 0
    out = capsys.readouterr().out
    m2 = 0.9 * (0.9 * 0.75 + 0.1 * 0.5) + 0.1 * 0.2
    assert f"run {first} " in out  # the first seed of the best-validation setting (lr 0.01)
    assert f"T0={m2:.6f}" in out and f"weights={2 * m2:.6g},{2 * (1 - m2):.6g}" in out
    assert (
        main(["fixed-weights", "--from", "cagrad", "-p", "synthetic", "-t", "T0_T1", "--lr", "0.001", "--results", db])
        == 0
    )
    assert "T0=0.500000" in capsys.readouterr().out
    assert main(["fixed-weights", "--from", "pcgrad", "-p", "synthetic", "-t", "T0_T1", "--results", db]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "records no task weights" in error
    assert main(["fixed-weights", "--from", "edm", "-p", "synthetic", "-t", "T0_T1", "--results", db]) == 2
    assert "no completed edm runs" in capsys.readouterr().err


def test_fixed_weights_launch_trains_with_the_source_hyperparameters(tmp_path, capsys):
    from mtlbench.training import RunConfig, Trainer
    from mtlbench.training.references import train_references

    db = tmp_path / "results.db"
    store = ResultsStore(db)
    base = dict(problem="synthetic", tasks="T0_T1", epochs=2, batch_size=128, lr=5e-3, dropout=0.1, threads=1)
    train_references(RunConfig(**base), seeds=[1], store=store)
    source = Trainer(RunConfig(**base, method="imtl_l", seed=1), store=store).run()
    assert (
        main(["fixed-weights", "--from", "imtl_l", "-p", "synthetic", "-t", "T0_T1", "--launch", "--results", str(db)])
        == 0
    )
    runs = store.runs(method="fixed_weights", status="completed")
    assert len(runs) == 1  # as many seeds as the source setting has
    launched = store.run(int(runs["id"].iloc[0]))["config"]
    for name in ("lr", "dropout", "epochs", "batch_size", "weight_decay", "optimizer", "scheduler"):
        assert launched[name] == source.config.to_dict()[name]
    weights = launched["method_params"]["weights"]
    assert sum(weights) == pytest.approx(2.0, abs=1e-5)
    printed = capsys.readouterr().out
    assert "weights=" + ",".join(f"{w:.6g}" for w in weights) in printed


# ------------------------------------------------------------------------------------------ Pareto
def test_pareto_mask_and_counts_on_a_hand_made_set():
    # objectives: accuracy (higher better), error (lower better)
    points = [
        (0.9, 0.30),  # A1: front
        (0.8, 0.10),  # A2: front
        (0.7, 0.50),  # A3: dominated by A1, A2 and S3
        (0.85, 0.20),  # S1: front
        (0.6, 0.05),  # S2: front
        (0.8, 0.35),  # S3: dominated by A1 only
        (0.8, 0.10),  # S4: ties with A2: neither dominates, both on the front
    ]
    higher = [True, False]
    mask = pareto_mask(points, higher)
    assert mask.tolist() == [True, True, False, True, True, False, True]
    counts = pareto_counts(points, ["adam"] * 3 + ["sgd"] * 4, higher).set_index("group")
    assert counts.loc["adam"].tolist() == [3, 2, 2]  # runs, PO (full), PO w.r.t. others (S3 beats A3)
    assert counts.loc["sgd"].tolist() == [4, 3, 3]  # S3 is dominated by A1; S1, S2, S4 survive
    with_nan = pareto_mask([(1.0, math.nan), (0.5, 0.5)], higher)
    assert with_nan.tolist() == [False, True]


# ------------------------------------------------------------------------------------------ tables
def test_latex_and_markdown_tables_bold_the_best_values():
    frame = pd.DataFrame(
        {"method": ["a_b", "c%d"], "CL acc": [1.25, -2.5], "RR mse": [0.5, 0.25], "MR": [1.5, 1.5], "seeds": [3, 3]}
    )
    table = Table(
        "demo",
        "Δm & friends",
        frame,
        best={"CL acc": "max", "RR mse": "min", "MR": "min"},
        formats={"CL acc": ".3f", "RR mse": ".2f", "MR": ".1f"},
        groups={"CL acc": "Classification", "RR mse": "Reconstruction"},
        headers={"CL acc": "acc", "RR mse": "mse"},
        notes=["n = 3"],
    )
    latex = table.to_latex()
    assert latex.startswith("\\documentclass{article}") and "\\usepackage{booktabs}" in latex
    assert (
        latex.index("\\toprule")
        < latex.index("\\midrule")
        < latex.index("\\bottomrule")
        < latex.index("\\end{tabular}")
    )
    assert "\\hline" not in latex
    assert "\\multicolumn{1}{c}{Classification}" in latex and "\\cmidrule(lr){2-2}" in latex
    assert "a\\_b & \\textbf{1.250} & 0.50 & \\textbf{1.5} & 3 \\\\" in latex
    assert "c\\%d & $-$2.500 & \\textbf{0.25} & \\textbf{1.5} & 3 \\\\" in latex  # ties are all bold
    assert "\\caption{\\ensuremath{\\Delta}m \\& friends}" in latex
    assert latex.count("\\begin{") == latex.count("\\end{")
    markdown = table.to_markdown()
    assert "| a_b | **1.250** | 0.50 | **1.5** | 3 |" in markdown
    assert "| method | seeds |" not in markdown and "Classification acc" in markdown
    assert latex_escape("50% of x_1 & {y}") == "50\\% of x\\_1 \\& \\{y\\}"


# -------------------------------------------------------------------------------------- selection
def test_final_setting_is_selected_on_the_common_seeds_and_delta_m_is_recomputed(tmp_path):
    store = ResultsStore(tmp_path / "results.db")
    add_reference(store)
    # setting A: best on seeds 1-2; setting B: worse on seeds 1-2 but 3 extra seeds with a high validation
    # Delta_m (its final seeds): they must not count; setting C: the best scores but a failed run
    for seed, gains in enumerate([(2.0, 0.0), (4.0, 2.0)], start=1):
        add_run(store, "unit_scal", seed, gains, val_delta_m=-1.0, lr=0.01)
    for seed in range(1, 6):
        add_run(store, "unit_scal", seed, (0.0, 0.0), val_delta_m=-3.0 if seed <= 2 else 10.0, lr=0.001)
    for seed in (1, 2):
        add_run(store, "unit_scal", seed, (9.0, 9.0), val_delta_m=5.0, lr=0.1)
    add_run(store, "unit_scal", 3, (0.0, 0.0), lr=0.1, status="failed")
    # seed 1 of setting A again, with gradient diagnostics: not another seed
    add_run(store, "unit_scal", 1, (7.0, 7.0), val_delta_m=-1.0, lr=0.01, config_extra={"grad_metrics_every": 5})
    problem, notes = resolve_problem(store, "synthetic", "T0_T1")
    assert notes == [] and problem.option_values == create_problem("synthetic", TASKS).option_values
    data = load_problem_runs(store, problem)
    final = data.final_runs()["unit_scal"]
    assert [(r.config["lr"], r.seed) for r in final] == [(0.01, 1), (0.01, 2)]
    assert [r.test_delta_m for r in final] == pytest.approx([1.0, 3.0])  # recomputed from the metrics
    assert len(data.failed) == 1
    with pytest.raises(MissingDataError, match="synthetic T0_T1 \\(multi_task, completed\\): 10"):
        resolve_problem(store, "synthetic", "T2_T3")


def test_comparison_and_significance_tables_on_known_runs(tmp_path: Path):
    from mtlbench.analysis.analyses import ANALYSES

    store = ResultsStore(tmp_path / "results.db")
    add_reference(store)
    for seed, gains in enumerate([(-4.0, -2.0), (-6.0, -4.0), (-5.0, -3.0)], start=1):
        add_run(store, "unit_scal", seed, gains)
    for seed, gains in enumerate([(2.0, 0.0), (4.0, 2.0), (3.0, 1.0)], start=1):
        add_run(store, "cagrad", seed, gains)
    data = load_problem_runs(store, create_problem("synthetic", TASKS))
    comparison = ANALYSES["comparison"].function(data, tmp_path).tables[0].frame.set_index("method")
    assert comparison.loc["CAGrad", "Δm (%)"] == pytest.approx(2.0)
    assert comparison.loc["Unit. Scal.", "Δm (%)"] == pytest.approx(-4.0)
    assert comparison.loc["CAGrad", "T0 mae"] == pytest.approx(3.0)
    assert comparison.loc["CAGrad", "MR"] == 1.0 and comparison.loc["Unit. Scal.", "MR"] == 2.0
    assert comparison.loc["CAGrad", "CI low"] <= 2.0 <= comparison.loc["CAGrad", "CI high"]
    significance = ANALYSES["significance"].function(data, tmp_path).tables[0]
    row = significance.frame.iloc[0]
    assert row["difference"] == pytest.approx(6.0)
    assert row["p"] == pytest.approx(stats.welch_test([1, 3, 2], [-5, -3, -4]).p_value)
    assert math.isnan(row["MWU p"])  # 3 seeds: no rank test
    assert any("Power warning" in note for note in significance.notes)
