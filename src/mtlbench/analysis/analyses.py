"""The analyses of a problem configuration: each turns the stored runs into tables and figures.

Each analysis is a function ``(data: ProblemRuns, out: Path) -> Result`` registered in
:data:`ANALYSES` (also a ``mtlbench analysis <name>`` command); it raises :class:`Skip` with the reason
when the store lacks its data. Paper references: 000 = Gama & Grassi, 001 = Elich et al., 003 =
Kurin et al.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtlbench.analysis import stats
from mtlbench.analysis.data import ProblemRuns, RunInfo, method_title, problem_args
from mtlbench.analysis.figures import Figure, boxplot, grid, pyplot, save
from mtlbench.analysis.fixed_weights import BETA, ema, extract_fixed_weights
from mtlbench.analysis.pareto import pareto_counts, pareto_mask
from mtlbench.analysis.tables import Table
from mtlbench.errors import UserInputError
from mtlbench.metrics import mean_ranks

BASELINE = "unit_scal"
DELTA = "Δm (%)"


class Skip(Exception):
    """An analysis has no data to work on (the message says what is missing and how to get it)."""


@dataclass
class Result:
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Analysis:
    name: str
    title: str
    description: str
    function: Callable[[ProblemRuns, Path], Result]


ANALYSES: dict[str, Analysis] = {}


def analysis(name: str, title: str, description: str) -> Callable:
    def register(function: Callable[[ProblemRuns, Path], Result]) -> Callable[[ProblemRuns, Path], Result]:
        ANALYSES[name] = Analysis(name, title, description, function)
        return function

    return register


# ------------------------------------------------------------------------------------------- helpers
def _problem_args(data: ProblemRuns) -> str:
    return problem_args(data.problem)


def _train_hint(data: ProblemRuns, method: str = "unit_scal", extra: str = "") -> str:
    return f"`mtlbench train {_problem_args(data)} --method {method}{extra}`"


def _need_runs(data: ProblemRuns) -> dict[str, list[RunInfo]]:
    if not data.runs:
        raise Skip(f"no completed multi-task runs; train some with {_train_hint(data)}")
    return data.final_runs()


def _need_delta(data: ProblemRuns) -> dict[str, list[RunInfo]]:
    final = _need_runs(data)
    if data.reference is None:
        raise Skip(
            f"no single-task test reference, so no Δm; create it with `mtlbench reference {_problem_args(data)}`"
        )
    return final


def _deltas(runs: list[RunInfo]) -> list[float]:
    return [r.test_delta_m for r in runs if math.isfinite(r.test_delta_m)]


def _metric_columns(data: ProblemRuns) -> list[tuple[str, str]]:
    return [(task, metric) for task, metrics in data.directions.items() for metric in metrics]


def _normalised_weights(run: RunInfo, tasks: list[str]) -> np.ndarray | None:
    rows = [epoch.get("weights") for epoch in run.epochs]
    if not rows or any(row is None or any(t not in row for t in tasks) for row in rows):
        return None
    array = np.array([[row[t] for t in tasks] for row in rows], dtype=float)
    sums = array.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(array)) or np.any(sums <= 0):
        return None
    return array / sums


def _weighted_methods(data: ProblemRuns) -> dict[str, list[tuple[RunInfo, np.ndarray]]]:
    """Final runs per method whose normalised weights vary (constant weights, e.g. Unit. Scal., are left out)."""
    tasks = list(data.problem.task_names)
    out: dict[str, list[tuple[RunInfo, np.ndarray]]] = {}
    for method, runs in data.final_runs().items():
        trajectories = [(run, w) for run in runs if (w := _normalised_weights(run, tasks)) is not None]
        if trajectories and any(np.ptp(w, axis=0).max() > 1e-9 for _, w in trajectories):
            out[method] = trajectories
    return out


# ------------------------------------------------------------------------------------------ analyses
@analysis(
    "runs",
    "Stored runs",
    "Every method with runs of this problem configuration: settings (hyperparameter combinations), completed "
    "and failed runs, the selected setting (best mean validation Δm) and its hyperparameters.",
)
def runs_inventory(data: ProblemRuns, out: Path) -> Result:
    if not data.runs and not data.failed:
        raise Skip(f"no multi-task runs; train some with {_train_hint(data)}")
    final = data.final_runs() if data.runs else {}
    rows = []
    for method in dict.fromkeys([r.method for r in data.runs] + [r.method for r in data.failed]):
        completed = [r for r in data.runs if r.method == method]
        failed = [r for r in data.failed if r.method == method]
        chosen = final.get(method, [])
        config = chosen[0].config if chosen else {}
        params = config.get("method_params") or {}
        rows.append(
            {
                "method": method_title(method),
                "settings": len({r.setting for r in completed + failed}),
                "completed": len(completed),
                "failed": len(failed),
                "final seeds": len(chosen),
                "lr": config.get("lr"),
                "dropout": config.get("dropout"),
                "weight decay": config.get("weight_decay"),
                "epochs": config.get("epochs"),
                "method params": ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
                "last error": _last_line(failed[-1].error) if failed else "",
            }
        )
    table = Table(
        "runs",
        f"Runs of {data.problem.name} {data.tasks_key}; the final setting of a method is its best mean validation Δm.",
        pd.DataFrame(rows),
        formats={"lr": ".3g", "dropout": ".2g", "weight decay": ".2g"},
    )
    return Result([table])


@analysis(
    "comparison",
    "Main comparison (000 Tables 1, 3, 4)",
    "Per method (final seeds of its best validation setting): relative change of each test metric against the "
    "single-task reference (%, higher is better), Δm (mean over seeds), its std and 95% bootstrap CI, and the mean "
    "rank MR (000 eq. 2) of the seed-averaged metrics. Also the mean test metrics themselves.",
)
def comparison(data: ProblemRuns, out: Path) -> Result:
    final = _need_delta(data)
    metrics = _metric_columns(data)
    means = {
        method: {
            task: {m: float(np.nanmean([r.test_metrics[task][m] for r in runs])) for m in ms}
            for task, ms in data.directions.items()
        }
        for method, runs in final.items()
    }
    try:
        ranks = mean_ranks({method_title(m): v for m, v in means.items()}, data.directions)
    except UserInputError:  # a metric missing (NaN) for some method: no mean rank
        ranks = {}
    rows, raw_rows = [], []
    groups, best, formats = {}, {}, {}
    for method, runs in final.items():
        deltas = _deltas(runs)
        low, high = stats.bootstrap_ci(deltas)
        row: dict = {"method": method_title(method), "seeds": len(runs)}
        raw: dict = {"method": method_title(method), "seeds": len(runs)}
        for task, metric in metrics:
            column = f"{task} {metric}"
            row[column] = float(np.nanmean([r.changes[task][metric] for r in runs if r.changes]))
            raw[column] = means[method][task][metric]
            raw[f"{column} std"] = _std([r.test_metrics[task][metric] for r in runs])
        row[DELTA] = float(np.mean(deltas)) if deltas else math.nan
        row["std"] = _std(deltas)
        row["CI low"], row["CI high"] = low, high
        row["MR"] = ranks.get(method_title(method), math.nan)
        rows.append(row)
        raw_rows.append(raw)
    frame = pd.DataFrame(rows).sort_values(DELTA, ascending=False, kind="stable", ignore_index=True)
    headers = {}
    for task, metric in metrics:
        column = f"{task} {metric}"
        groups[column], headers[column], best[column], formats[column] = task, metric, "max", ".3f"
    best.update({DELTA: "max", "std": "min", "MR": "min"})
    formats.update({DELTA: ".3f", "std": ".3f", "CI low": ".3f", "CI high": ".3f", "MR": ".2f"})
    n_seeds = sorted({len(runs) for runs in final.values()})
    table = Table(
        "comparison",
        f"{data.problem.name} {data.tasks_key}: relative change per test metric (%) and Δm (%) ↑, mean over final "
        "seeds; std, 95% percentile-bootstrap CI of the mean Δm; mean rank MR ↓.",
        frame,
        best=best,
        formats=formats,
        groups=groups,
        headers=headers,
        notes=[
            f"Seeds per method: {', '.join(map(str, n_seeds))}. A bootstrap CI from fewer than about 10 seeds is "
            "narrower than the true uncertainty; with 1 seed there is no CI."
        ],
    )
    reference_row: dict = {"method": "single-task reference", "seeds": None}
    for task, metric in metrics:
        reference_row[f"{task} {metric}"] = data.reference[task][metric]
    raw_frame = pd.concat([pd.DataFrame([reference_row]), pd.DataFrame(raw_rows)], ignore_index=True)
    raw_best = {}
    for task, metric in metrics:
        raw_best[f"{task} {metric}"] = "max" if data.directions[task][metric] else "min"
    raw_table = Table(
        "test_metrics",
        f"{data.problem.name} {data.tasks_key}: mean test metrics over final seeds (std beside), and the "
        "single-task reference.",
        raw_frame[["method", "seeds", *[c for c in raw_frame.columns if c not in ("method", "seeds")]]],
        best=raw_best,
        formats={c: ".4g" for c in raw_frame.columns if c not in ("method", "seeds")},
    )
    return Result([table, raw_table])


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1][:80] if lines else ""


def _std(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan


@analysis(
    "significance",
    "Significance against Unit. Scal.",
    "Welch's t-test of each method's test Δm against Unit. Scal. (two-sided; Holm-adjusted over methods), the "
    "Mann–Whitney U test where both have ≥10 seeds, and the power: the smallest standardised difference (Cohen's "
    "d) the t-test detects with 80% power at these seed counts, also in Δm points.",
)
def significance(data: ProblemRuns, out: Path) -> Result:
    final = _need_delta(data)
    if BASELINE not in final:
        raise Skip(f"no Unit. Scal. runs to compare against; train them with {_train_hint(data)}")
    base = _deltas(final[BASELINE])
    rows = []
    for method, runs in final.items():
        if method == BASELINE:
            continue
        values = _deltas(runs)
        welch = stats.welch_test(values, base)
        rank_ok = min(len(values), len(base)) >= stats.RANK_TEST_MIN_SEEDS
        mwu = stats.mann_whitney(values, base) if rank_ok else stats.TestResult(math.nan, math.nan)
        mde = stats.minimal_detectable_effect(len(values), len(base))
        scale = stats.pooled_std(values, base)
        rows.append(
            {
                "method": method_title(method),
                "seeds": len(values),
                "Unit. Scal. seeds": len(base),
                DELTA: float(np.mean(values)) if values else math.nan,
                "difference": (float(np.mean(values)) - float(np.mean(base))) if values and base else math.nan,
                "Welch t": welch.statistic,
                "df": welch.df,
                "p": welch.p_value,
                "MWU p": mwu.p_value,
                "MDE d (80%)": mde,
                "MDE Δm points": mde * scale if math.isfinite(mde) and math.isfinite(scale) else math.nan,
            }
        )
    if not rows:
        raise Skip("only Unit. Scal. has runs; train other methods to compare")
    frame = pd.DataFrame(rows)
    frame.insert(list(frame.columns).index("p") + 1, "p (Holm)", stats.holm(frame["p"].tolist()))
    frame = frame.sort_values("difference", ascending=False, kind="stable", ignore_index=True)
    few = min(min(frame["seeds"]), len(base))
    notes = [
        "p: Welch's two-sided t-test against Unit. Scal.; p (Holm): adjusted for the number of methods; MWU p: "
        f"Mann–Whitney U, only where both groups have ≥{stats.RANK_TEST_MIN_SEEDS} seeds. MDE: the smallest true "
        "difference (Cohen's d, and in Δm points at the pooled std) the t-test would detect with 80% power at "
        "α = 0.05; smaller real differences are likely missed."
    ]
    if few < 5:
        notes.append(
            f"Power warning: with {few} seed(s) per group the test can only detect very large differences "
            "(d ≥ 2 or so); a non-significant p here is no evidence that the methods are equal."
        )
    table = Table(
        "significance",
        f"{data.problem.name} {data.tasks_key}: test Δm of each method against Unit. Scal.",
        frame,
        best={DELTA: "max", "difference": "max"},
        formats={
            DELTA: ".3f",
            "difference": ".3f",
            "Welch t": ".3f",
            "df": ".1f",
            "p": ".3g",
            "p (Holm)": ".3g",
            "MWU p": ".3g",
            "MDE d (80%)": ".2f",
            "MDE Δm points": ".3f",
        },
        notes=notes,
    )
    return Result([table])


@analysis(
    "statistics",
    "Δm statistics (000 Table 5)",
    "min, max, median, std and mean of the test Δm of each method's final seeds.",
)
def statistics(data: ProblemRuns, out: Path) -> Result:
    final = _need_delta(data)
    rows = []
    for method, runs in final.items():
        described = stats.describe(_deltas(runs))
        rows.append({"method": method_title(method), "seeds": len(runs), **described})
    frame = pd.DataFrame(rows).rename(columns={"median": "med", "mean": "avg"})
    table = Table(
        "statistics",
        f"{data.problem.name} {data.tasks_key}: statistics of test Δm (%) over final seeds.",
        frame,
        best={"min": "max", "max": "max", "med": "max", "std": "min", "avg": "max"},
        formats={c: ".3f" for c in ("min", "max", "med", "std", "avg")},
        headers={"min": "min ↑", "max": "max ↑", "med": "med ↑", "std": "std ↓", "avg": "avg ↑"},
    )
    return Result([table])


@analysis(
    "boxplot",
    "Δm box plot (000 Figs. 1, 2, 4, 8)",
    "Test Δm of each method's final seeds; the dashed red line is the Unit. Scal. median.",
)
def delta_boxplot(data: ProblemRuns, out: Path) -> Result:
    final = _need_delta(data)
    groups = {method: _deltas(runs) for method, runs in final.items() if _deltas(runs)}
    if not groups:
        raise Skip("no finite test Δm")
    order = sorted(groups, key=lambda m: (m != BASELINE, -float(np.median(groups[m]))))
    fig, (ax,) = grid(1, width=max(4.5, 0.55 * len(order) + 2), height=3.6)
    boxplot(ax, {method_title(m): groups[m] for m in order}, baseline=method_title(BASELINE), ylabel=DELTA)
    ax.set_title(f"{data.problem.name} {data.tasks_key}")
    caption = (
        "Box plot of test Δm over final seeds per method; the dashed red line is the Unit. Scal. median."
        if BASELINE in groups
        else "Box plot of test Δm over final seeds per method (no Unit. Scal. runs: no median line)."
    )
    return Result(figures=[save(fig, out, "delta_m_boxplot", caption)])


@analysis(
    "fixed_weights",
    "Unit. Scal. vs fixed weights vs best SMTO (000 Table 2)",
    "Mean test Δm of Unit. Scal., of the best fixed-weights setting (weights from `mtlbench fixed-weights`) and "
    "of the best other method.",
)
def fixed_weights_table(data: ProblemRuns, out: Path) -> Result:
    final = _need_delta(data)
    if "fixed_weights" not in final:
        raise Skip(
            f"no fixed-weights runs; create them with `mtlbench fixed-weights --from cagrad {_problem_args(data)} "
            "--launch`"
        )
    if BASELINE not in final:
        raise Skip(f"no Unit. Scal. runs; train them with {_train_hint(data)}")
    others = {m: _deltas(r) for m, r in final.items() if m not in (BASELINE, "fixed_weights") and _deltas(r)}
    mean = {m: float(np.mean(v)) for m, v in others.items()}
    best_method = max(mean, key=mean.get) if mean else None
    fixed = final["fixed_weights"]
    weights = (fixed[0].config.get("method_params") or {}).get("weights")
    row = {
        "problem": f"{data.problem.name} {data.tasks_key}",
        "Unit. Scal.": float(np.mean(_deltas(final[BASELINE]))),
        "Fixed weights": float(np.mean(_deltas(fixed))),
        "Best SMTO": mean[best_method] if best_method else math.nan,
        "best SMTO is": method_title(best_method) if best_method else "",
        "fixed weights (sum T)": ", ".join(f"{w:.3g}" for w in weights) if weights else "",
    }
    table = Table(
        "fixed_weights_comparison",
        f"{data.problem.name} {data.tasks_key}: mean test Δm (%) ↑ of Unit. Scal., fixed weights and the best SMTO.",
        pd.DataFrame([row]),
        formats={"Unit. Scal.": ".3f", "Fixed weights": ".3f", "Best SMTO": ".3f"},
    )
    return Result([table])


@analysis(
    "weights",
    "Task weights over training (000 Fig. 6)",
    "Per method that records varying task weights: per epoch the mean weight of each task normalised to sum 1 "
    "(mean over final seeds, band = min–max over seeds) and its EMA (β 0.9, dotted); the table gives 000's "
    "extracted constant weights (EMA's last value, first final run).",
)
def weights_over_training(data: ProblemRuns, out: Path) -> Result:
    _need_runs(data)
    weighted = _weighted_methods(data)
    if not weighted:
        raise Skip(
            "no run records varying task weights (Unit. Scal. and fixed weights are constant; PCGrad and GradDrop "
            f"record none); train e.g. {_train_hint(data, 'cagrad')}"
        )
    plt = pyplot()
    tasks = list(data.problem.task_names)
    fig, axes = grid(len(weighted), sharey=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rows = []
    for ax, (method, trajectories) in zip(axes, weighted.items(), strict=True):
        length = min(len(w) for _, w in trajectories)
        stack = np.stack([w[:length] for _, w in trajectories])  # runs, epochs, tasks
        mean = stack.mean(axis=0)
        smoothed = ema(mean, BETA)
        epochs = np.arange(1, length + 1)
        for t, task in enumerate(tasks):
            color = colors[t % len(colors)]
            ax.plot(epochs, mean[:, t], color=color, alpha=0.45, label=task)
            if len(trajectories) > 1:
                ax.fill_between(epochs, stack[:, :, t].min(axis=0), stack[:, :, t].max(axis=0), color=color, alpha=0.15)
            ax.plot(epochs, smoothed[:, t], color=color, linestyle=":", linewidth=1.6)
        ax.axhline(1 / len(tasks), color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(method_title(method))
        ax.set_xlabel("epoch")
        _integer_epochs([ax])
        ax.set_ylabel("normalised weight")
        ax.grid(True, alpha=0.3)
        if len(tasks) <= 6:
            ax.legend(fontsize=7)
        first = trajectories[0]
        constant = extract_fixed_weights(first[1])
        rows.append({"method": method_title(method), "run": first[0].id, **dict(zip(tasks, constant, strict=True))})
    figure = save(
        fig,
        out,
        "weights_over_training",
        "Normalised task weights per epoch (solid: mean over final seeds; band: min–max), EMA β 0.9 (dotted); "
        "dashed grey: equal weights 1/T.",
    )
    table = Table(
        "extracted_weights",
        "000's fixed weights (sum 1): EMA (β 0.9) of the per-epoch normalised weights, last epoch, of the first final "
        "run; `mtlbench fixed-weights --from METHOD` prints them as `--set weights=...` (sum T).",
        pd.DataFrame(rows),
        formats={t: ".4f" for t in tasks},
    )
    return Result([table], [figure])


@analysis(
    "weight_error",
    "Mean error of the weights to equal weights (000 Fig. 2 right)",
    "Per final run: the mean over epochs and tasks of |w_i / sum_j w_j - 1/T|, the distance of a method's "
    "normalised weights from Unit. Scal.'s equal weights.",
)
def weight_error(data: ProblemRuns, out: Path) -> Result:
    _need_runs(data)
    weighted = _weighted_methods(data)
    if not weighted:
        raise Skip("no run records varying task weights")
    n_tasks = len(data.problem.task_names)
    groups = {
        method_title(m): [float(np.abs(w - 1 / n_tasks).mean()) for _, w in trajectories]
        for m, trajectories in weighted.items()
    }
    fig, (ax,) = grid(1, width=max(4.5, 0.55 * len(groups) + 2), height=3.4)
    boxplot(ax, groups, ylabel="mean |w − 1/T|")
    ax.set_title(f"{data.problem.name} {data.tasks_key}")
    figure = save(fig, out, "weight_error", "Mean absolute error of the normalised task weights to 1/T per final run.")
    return Result(figures=[figure])


def _grad_runs(data: ProblemRuns) -> dict[str, list[RunInfo]]:
    with_grad = [r for r in data.runs if any("grad" in (e.get("extra") or {}) for e in r.epochs)]
    labels = {}
    for run in with_grad:
        settings = {r.setting for r in with_grad if r.method == run.method}
        label = method_title(run.method) if len(settings) == 1 else f"{run.params_label} lr={run.config.get('lr')}"
        labels.setdefault(label, []).append(run)
    return labels


def _grad_series(runs: list[RunInfo], group: str, measure: str) -> dict[str, np.ndarray] | None:
    """Per epoch, stats of one diagnostic averaged over runs: mean, std, p2_5, p97_5 arrays."""
    per_run = []
    for run in runs:
        series = []
        for epoch in run.epochs:
            entry = ((epoch.get("extra") or {}).get("grad") or {}).get(group, {}).get(measure)
            series.append(entry if entry and entry.get("n") else None)
        if any(s is not None for s in series):
            per_run.append(series)
    if not per_run:
        return None
    length = min(len(s) for s in per_run)
    out = {}
    for key in ("mean", "std", "p2_5", "p97_5"):
        values = np.array(
            [
                [(s[e] or {}).get(key, math.nan) if s[e] is not None else math.nan for e in range(length)]
                for s in per_run
            ]
        )
        with np.errstate(all="ignore"):
            out[key] = np.nanmean(values, axis=0) if np.isfinite(values).any() else values[0]
    return out


@analysis(
    "gradients",
    "Gradient diagnostics over training (000 Fig. 3a/7, 001 Fig. 3)",
    "From runs trained with `--grad-metrics EVERY`: the mean over tasks of cos(g_i, mean_j g_j) on the shared "
    "parameters (000), and 001's S_cos, S_mag and fraction of sign conflicts for pairs of tasks on one sample "
    "(MTL) and pairs of samples of one task (STL); lines are epoch means, bands ±std, dotted 2.5/97.5 percentiles.",
)
def gradients(data: ProblemRuns, out: Path) -> Result:
    _need_runs(data)
    labelled = _grad_runs(data)
    if not labelled:
        raise Skip(
            f"no run recorded gradient diagnostics; train one with {_train_hint(data, extra=' --grad-metrics 100')}"
        )
    plt = pyplot()
    figures = []
    fig, (ax,) = grid(1, width=5.5, height=3.4)
    for label, runs in labelled.items():
        series = _grad_series(runs, "batch", "cos_to_mean")
        if series is None:
            continue
        epochs = np.arange(1, len(series["mean"]) + 1)
        line = ax.plot(epochs, series["mean"], label=label)[0]
        ax.fill_between(epochs, series["p2_5"], series["p97_5"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("epoch")
    _integer_epochs([ax])
    ax.set_ylabel("mean cos(g_i, mean g)")
    ax.set_title(f"{data.problem.name} {data.tasks_key}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    figures.append(
        save(
            fig,
            out,
            "grad_cos_to_mean",
            "Mean over tasks of the cosine between each task gradient and the mean gradient (shared parameters, "
            "whole batch), per epoch; band: 2.5–97.5 percentiles of the sampled steps.",
        )
    )
    measures = (("cos", "S_cos"), ("mag", "S_mag"), ("conflict", "sign conflicts"))
    methods = list(labelled.items())[:6]
    fig, axes = grid(3 * len(methods), max_cols=3, width=4.0, height=2.8)
    for row, (label, runs) in enumerate(methods):
        for col, (measure, name) in enumerate(measures):
            ax = axes[3 * row + col]
            for group, color, kind in (("mtl", "tab:blue", "MTL (tasks)"), ("stl", "tab:red", "STL (samples)")):
                series = _grad_series(runs, group, measure)
                if series is None:
                    continue
                epochs = np.arange(1, len(series["mean"]) + 1)
                ax.plot(epochs, series["mean"], color=color, label=kind)
                ax.fill_between(
                    epochs, series["mean"] - series["std"], series["mean"] + series["std"], color=color, alpha=0.15
                )
                ax.plot(epochs, series["p2_5"], color=color, linestyle=":", linewidth=0.8)
                ax.plot(epochs, series["p97_5"], color=color, linestyle=":", linewidth=0.8)
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("epoch")
            _integer_epochs([ax])
            ax.grid(True, alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7)
    plt.tight_layout()
    figures.append(
        save(
            fig,
            out,
            "grad_conflicts",
            "001's gradient similarity for pairs of tasks on one sample (MTL, blue) and pairs of samples of one "
            "task (STL, red): mean (line), ±std (band), 2.5/97.5 percentiles (dotted).",
        )
    )
    return Result(figures=figures)


@analysis(
    "pareto",
    "Pareto-optimal runs (001 Table 2)",
    "Every completed run (all settings and seeds) as a point of its test metrics; a run is Pareto optimal if no "
    "other run is at least as good on every metric and better on one. Counted per group (optimizer if several "
    "were used, else method): on the overall front, and not dominated by any run of another group.",
)
def pareto(data: ProblemRuns, out: Path) -> Result:
    _need_runs(data)
    runs = data.runs
    if len(runs) < 2:
        raise Skip("fewer than 2 completed runs")
    metrics = _metric_columns(data)
    points = np.array([[_get(r.test_metrics, t, m) for t, m in metrics] for r in runs])
    higher = [data.directions[t][m] for t, m in metrics]
    optimizers = {str(r.config.get("optimizer")) for r in runs}
    by_optimizer = len(optimizers) > 1
    groups = [str(r.config.get("optimizer")) if by_optimizer else method_title(r.method) for r in runs]
    counts = pareto_counts(points, groups, higher)
    table = Table(
        "pareto_counts",
        f"{data.problem.name} {data.tasks_key}: Pareto-optimal (PO) runs per "
        f"{'optimizer' if by_optimizer else 'method'} over all {len(metrics)} test metrics.",
        counts,
        best={"PO (full)": "max", "PO w.r.t. others": "max"},
    )
    tasks = list(data.problem.task_names)
    if len(tasks) < 2:
        return Result([table])
    scores, label = _task_scores(data, runs)
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]][:3]
    plt = pyplot()
    fig, axes = grid(len(pairs), width=4.4, height=3.6)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    full = pareto_mask(points, higher)
    names = list(dict.fromkeys(groups))
    for ax, (a, b) in zip(axes, pairs, strict=True):
        xy = np.array([[scores[r.id][a], scores[r.id][b]] for r in runs])
        for k, name in enumerate(names):
            mask = np.array([g == name for g in groups])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=14, alpha=0.7, color=colors[k % len(colors)], label=name)
        ax.scatter(xy[full, 0], xy[full, 1], s=40, facecolors="none", edgecolors="black", linewidths=0.9, label="PO")
        front = pareto_mask(xy, [label[a][1], label[b][1]])
        ordered = xy[front][np.argsort(xy[front][:, 0])]
        ax.plot(ordered[:, 0], ordered[:, 1], color="black", linewidth=0.8, alpha=0.6, drawstyle="steps-post")
        ax.set_xlabel(label[a][0])
        ax.set_ylabel(label[b][0])
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    plt.tight_layout()
    figure = save(
        fig,
        out,
        "pareto_fronts",
        "Runs as points of two tasks' scores, coloured by group; circled: Pareto optimal over all metrics; line: "
        "the front of the two tasks shown.",
    )
    return Result([table], [figure])


def _integer_epochs(axes: list) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _get(metrics: dict, task: str, metric: str) -> float:
    try:
        return float(metrics[task][metric])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _task_scores(data: ProblemRuns, runs: list[RunInfo]) -> tuple[dict[int, dict[str, float]], dict]:
    """Per run and task one score for plotting: the task's mean relative change (%) if a reference exists,
    else the task's first metric; with (axis label, higher is better) per task."""
    scores: dict[int, dict[str, float]] = {}
    labels = {}
    for task, metrics in data.directions.items():
        first = next(iter(metrics))
        if data.reference is not None:
            labels[task] = (f"{task}: mean relative change (%) ↑", True)
        else:
            labels[task] = (f"{task} {first} {'↑' if metrics[first] else '↓'}", metrics[first])
        for run in runs:
            if data.reference is not None and run.changes:
                value = float(np.mean(list(run.changes[task].values())))
            else:
                value = _get(run.test_metrics, task, first)
            scores.setdefault(run.id, {})[task] = value
    return scores, labels


@analysis(
    "rotation",
    "RotoGrad rotation loss (000 Fig. 9)",
    "The per-epoch mean of RotoGrad's rotation loss L_rot (the epoch records' extra.rotation_loss), mean over the "
    "runs of each setting.",
)
def rotation(data: ProblemRuns, out: Path) -> Result:
    _need_runs(data)
    runs = [
        r
        for r in data.runs
        if r.method == "rotograd" and any("rotation_loss" in (e.get("extra") or {}) for e in r.epochs)
    ]
    if not runs:
        raise Skip(f"no RotoGrad runs; train one with {_train_hint(data, 'rotograd')}")
    settings: dict[str, list[RunInfo]] = {}
    for run in runs:
        settings.setdefault(run.setting, []).append(run)
    fig, (ax,) = grid(1, width=5.5, height=3.4)
    for group in settings.values():
        length = min(len(r.epochs) for r in group)
        values = np.array(
            [[(r.epochs[e].get("extra") or {}).get("rotation_loss", math.nan) for e in range(length)] for r in group]
        )
        config = group[0].config
        label = f"lr={config.get('lr')}, {group[0].params_label} ({len(group)} runs)"
        ax.plot(np.arange(1, length + 1), np.nanmean(values, axis=0), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    _integer_epochs([ax])
    ax.set_ylabel("mean L_rot")
    ax.set_title(f"RotoGrad on {data.problem.name} {data.tasks_key}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    figure = save(
        fig, out, "rotation_loss", "RotoGrad's rotation loss per epoch (mean over steps and runs), log scale."
    )
    return Result(figures=[figure])


@analysis(
    "overhead",
    "Time and memory overhead (003)",
    "Per method (final runs), per device: training time per step and per epoch (without evaluation and without "
    "gradient-diagnostics time), and peak memory, each also relative to Unit. Scal. on the same device.",
)
def overhead(data: ProblemRuns, out: Path) -> Result:
    final = _need_runs(data)
    rows = []
    memory_kinds = set()
    for method, runs in final.items():
        by_device: dict[str, list[RunInfo]] = {}
        for run in runs:
            by_device.setdefault(str(run.config.get("device")), []).append(run)
        for device, device_runs in by_device.items():
            step_times, epoch_times, memories = [], [], []
            for run in device_runs:
                for epoch in run.epochs:
                    grad = ((epoch.get("extra") or {}).get("grad") or {}).get("seconds", 0.0)
                    train = epoch.get("train_seconds")
                    if train is not None and epoch.get("steps"):
                        step_times.append((train - grad) / epoch["steps"])
                        epoch_times.append(train - grad)
                    elif epoch.get("seconds") is not None:
                        epoch_times.append(epoch["seconds"])
                    memory = epoch.get("memory") or {}
                    if memory.get("peak_mb") is not None:
                        memories.append(memory["peak_mb"])
                        memory_kinds.add(memory.get("kind"))
            rows.append(
                {
                    "method": method_title(method),
                    "device": device,
                    "runs": len(device_runs),
                    "ms / step": 1000 * float(np.median(step_times)) if step_times else math.nan,
                    "s / epoch": float(np.median(epoch_times)) if epoch_times else math.nan,
                    "peak MB": float(np.max(memories)) if memories else math.nan,
                    "_method": method,
                }
            )
    if not rows:
        raise Skip("no timing data")
    frame = pd.DataFrame(rows)
    for column, ratio in (
        ("ms / step", "step × Unit. Scal."),
        ("s / epoch", "epoch × Unit. Scal."),
        ("peak MB", "memory × Unit. Scal."),
    ):
        values = []
        for _, row in frame.iterrows():
            base = frame[(frame["_method"] == BASELINE) & (frame["device"] == row["device"])]
            reference = float(base[column].iloc[0]) if len(base) else math.nan
            values.append(row[column] / reference if reference and math.isfinite(reference) else math.nan)
        frame[ratio] = values
    frame = frame.drop(columns="_method")
    notes = [
        "Times are medians over epochs of the training loop only (validation excluded; time spent on gradient "
        "diagnostics subtracted). Epoch records written before mtlbench stored train_seconds give the epoch time "
        "with validation and no step time."
    ]
    if "process_rss" in memory_kinds:
        notes.append(
            "CPU memory is the training process's peak resident set size so far; runs trained one after another in "
            "one process (e.g. `mtlbench demo`) inherit earlier peaks, so compare memory only between runs started "
            "as separate processes. CUDA memory is the peak allocated by PyTorch during each epoch."
        )
    table = Table(
        "overhead",
        f"{data.problem.name} {data.tasks_key}: training time and peak memory per method, relative to Unit. Scal.",
        frame,
        best={"ms / step": "min", "s / epoch": "min", "peak MB": "min"},
        formats={
            "ms / step": ".1f",
            "s / epoch": ".2f",
            "peak MB": ".0f",
            "step × Unit. Scal.": ".2f",
            "epoch × Unit. Scal.": ".2f",
            "memory × Unit. Scal.": ".2f",
        },
        notes=notes,
    )
    return Result([table])


__all__ = ["ANALYSES", "Analysis", "Result", "Skip"]
