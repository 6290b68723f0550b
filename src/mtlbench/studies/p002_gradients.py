"""``002-gradients``: Guo et al. (002), Figs. 7/8 and 10-16 -- per-task gradients at the encoder's last layer.

For uniform weights, 002's grid-searched weights, CAGrad and Nash-MTL on NYUD-v2 and PASCAL-Context
(built-in sweeps ``nyud_002``/``pascal_002``, stand-ins where the data is not prepared), the trainer's gradient
diagnostics (``grad_metrics_every``; :mod:`mtlbench.training.diagnostics`, ``last.*``) record on the last
layer of the shared encoder (the model's ``last_shared_layer``, the layer AvgNorm measures): per task the norm
of its gradient ||g_i|| and of its weighted contribution |w_i| ||g_i||, its cosine and dot product with the
aggregated gradient d the method applied (Figs. 7, 14), and per task pair the cosine and dot product
(Figs. 10-13). 002 logs every iteration and plots 2k (NYUD) / 10k (PASCAL) iteration windows; our windows
are epochs (every ``grad_metrics_every``-th step of an epoch, summarised per epoch). Fig. 16's single-task
norms are not recorded (the references run without diagnostics).

The figures print no numbers: every cell is a final-window value with "no published number", and the claims
are qualitative: per-task cosines with the aggregated gradient (Fig. 7) and per-task gradient norms (Fig. 8)
end closer together for grid search, CAGrad and Nash-MTL than for uniform; task pairs drift towards
orthogonal (Figs. 10-13); and (002 sections V-F3 to V-F5) across the methods' runs the imbalance -- the
spread over tasks of M_i, each task's relative change to its single-task run -- follows the spread of the
per-task weighted gradient norms, not the tasks' pairwise gradient directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    ScaleInfo,
    StudyContext,
    StudyOutcome,
    cell_value,
    no_number,
)
from mtlbench.studies.p002_imbalance import COLUMNS, relative_change
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_epochs, final_metric

METHODS = ("unit_scal", "fixed_weights", "cagrad", "nash_mtl")
BALANCED = ("fixed_weights", "cagrad", "nash_mtl")
DATASETS = {"NYUD": "nyud", "PASCAL": "pascal_context"}
FIGURES = {
    "NYUD": {"cos": "002 Fig. 7", "norm": "002 Fig. 8", "pairs": "002 Figs. 10, 12"},
    "PASCAL": {"cos": "002 Fig. 14", "norm": "002 Figs. 15, 16", "pairs": "002 Figs. 11, 13"},
}


def _settings(every: int) -> dict[str, Any]:
    return {"methods": list(METHODS), "settings": {"grad_metrics_every": every}}


def series(epochs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The per-epoch means of diagnostic ``last.<key>`` (NaN where an epoch has none)."""
    out = []
    for record in epochs:
        stats = ((record.get("extra") or {}).get("grad") or {}).get("last", {}).get(key) or {}
        out.append(float(stats["mean"]) if stats.get("n") else math.nan)
    return out


def final_window(values: Sequence[float]) -> float:
    """Mean of the finite values of the last third of the windows (at least the last one)."""
    if not values:
        return math.nan
    tail = values[-max(1, len(values) // 3) :]
    finite = [v for v in tail if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def spread(values: Sequence[float], *, log: bool = False) -> float:
    """Population std over tasks (of log values with ``log``); NaN with fewer than two finite values."""
    finite = [math.log(v) if log else v for v in values if math.isfinite(v) and (not log or v > 0)]
    if len(finite) < 2:
        return math.nan
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of the finite pairs (NaN with fewer than three)."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return math.nan
    from scipy.stats import spearmanr

    result = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return float(result.statistic)


@register_study
class Gradients002(SweepStudy):
    name = "002-gradients"
    paper = "002"
    title = "Per-task gradient norms and directions at the encoder's last layer, and what predicts imbalance"
    targets = "Figs. 7, 8, 10-16"
    problems = ("nyud", "pascal_context", "synthetic_scenes")
    description = (
        "nyud_002 / pascal_002 with grad_metrics_every: uniform, grid, CAGrad, Nash-MTL; last-layer norms/cosines."
    )
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, uniform/grid/Nash-MTL, 1 seed, tiny, every 2nd step", 7, 0.003),
        "smoke": ScaleInfo("NYUD and PASCAL stand-ins, 4 methods, 1 seed, 5 epochs, every 2nd step", 17, 0.3),
        "cpu": ScaleInfo(
            "NYUD and PASCAL stand-ins at 64 px, 4 methods, 1 seed, every 5th step; measured 35 min", 17, 0.6
        ),
        "paper": ScaleInfo("002's ResNet-18 protocol, 4 methods, diagnostics every step", 17, 200.0, 60.0),
    }
    sweeps = (
        StudySweep(
            "nyud_002",
            "NYUD",
            overlays={
                "test": test_scale_overlay(
                    ["unit_scal", "fixed_weights", "nash_mtl"], settings={"grad_metrics_every": 2}
                ),
                "smoke": _settings(2),
                "cpu": _settings(5),
                "paper": _settings(1),
            },
            stand_in=stand_ins.dense_002("nyud"),
        ),
        StudySweep(
            "pascal_002",
            "PASCAL",
            overlays={"smoke": _settings(2), "cpu": _settings(5), "paper": _settings(1)},
            stand_in=stand_ins.dense_002("pascal_context"),
            scales=("smoke", "cpu", "paper"),
        ),
    )

    def cells(self) -> list[Cell]:
        cells = []
        for label, dataset in DATASETS.items():
            for method in METHODS:
                for task, _, _ in COLUMNS[dataset]:
                    cells.append(
                        Cell(
                            f"{label}/{method}/cos.{task}",
                            f"{label}: {method} cos(g_{task}, d), final window",
                            no_number(FIGURES[label]["cos"]),
                        )
                    )
                    cells.append(
                        Cell(
                            f"{label}/{method}/wnorm.{task}",
                            f"{label}: {method} |w_{task}| ||g_{task}||, final window",
                            no_number(FIGURES[label]["norm"]),
                        )
                    )
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "cos_converges",
                "Per-task cosines with the aggregated gradient end closer together for grid search, CAGrad and "
                "Nash-MTL than for uniform",
                "002 Figs. 7, 14, section V-F4",
                "qualitative",
            ),
            Claim(
                "norms_converge",
                "Per-task gradient norms end closer together for grid search, CAGrad and Nash-MTL than for uniform",
                "002 Figs. 8, 15, section V-F5",
                "qualitative",
            ),
            Claim(
                "pairs_orthogonal",
                "As training progresses most task pairs' gradients become closer to orthogonal",
                "002 Figs. 10-13, Appendix A",
                "qualitative",
            ),
            Claim(
                "norm_not_direction",
                "The per-task gradient norm, not the tasks' gradient directions, predicts the imbalance",
                "002 sections V-F3 to V-F5, Appendix A-B",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        self._context = context
        self._summary: dict[str, dict[str, list[dict[str, Any]]]] = {}
        outcome = super().execute(context)
        outcome.notes = list(dict.fromkeys(outcome.notes))  # one note per stand-in, not per sweep
        return outcome

    def _runs(self, label: str, report: Any, context: StudyContext) -> dict[str, list[dict[str, Any]]]:
        """Per method: one entry per final seed with the per-epoch series and the seed's M_i per task."""
        dataset = DATASETS[label]
        tasks = [t for t, _, _ in COLUMNS[dataset]]
        pairs = [f"{a}-{b}" for i, a in enumerate(tasks) for b in tasks[i + 1 :]]
        reference = {
            (r.task, r.metric): float(r.value["test"]) for r in report.references if r.value and r.value.get("test")
        }
        out: dict[str, list[dict[str, Any]]] = {}
        for result in report.methods:
            for seed, epochs in sorted(final_epochs(context, report, result.method).items()):
                changes = {}
                for task, metric, higher in COLUMNS[dataset]:
                    value = final_metric(report, result.method, task, metric).get(seed)
                    base = reference.get((task, metric))
                    if value is not None and base:
                        changes[task] = relative_change(value, base, higher)
                entry = {
                    "seed": seed,
                    "changes": changes,
                    "series": {
                        f"{kind}.{t}": series(epochs, f"{kind}.{t}")
                        for kind in ("cos", "wnorm", "norm", "dot")
                        for t in tasks
                    },
                    "pairs": {f"pcos.{p}": series(epochs, f"pcos.{p}") for p in pairs},
                }
                out.setdefault(result.method, []).append(entry)
        return out

    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        for label, report in reports.items():
            runs = self._runs(label, report, self._context)
            self._summary[label] = runs
            for method, entries in runs.items():
                for task, _, _ in COLUMNS[DATASETS[label]]:
                    for kind in ("cos", "wnorm"):
                        key = f"{label}/{method}/{kind}.{task}"
                        if key in by_key:
                            values = [final_window(e["series"][f"{kind}.{task}"]) for e in entries]
                            mean, ci, n = cell_value(values)
                            outcome.cells.append(CellResult(by_key[key], mean, ci, n, "" if n else "not recorded"))
        shown = {r.cell.key for r in outcome.cells}
        for key, cell in by_key.items():
            if key not in shown:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))

    def _spreads(self, label: str, method: str) -> list[dict[str, float]]:
        tasks = [t for t, _, _ in COLUMNS[DATASETS[label]]]
        out = []
        for entry in self._summary.get(label, {}).get(method, []):
            s = entry["series"]
            out.append(
                {
                    "cos": spread([final_window(s[f"cos.{t}"]) for t in tasks]),
                    "norm": spread([final_window(s[f"wnorm.{t}"]) for t in tasks], log=True),
                    "pair_cos": _nanmean([final_window(v) for v in entry["pairs"].values()]),
                    "pair_abs_first": _nanmean([abs(v[0]) for v in entry["pairs"].values() if v]),
                    "pair_abs_last": _nanmean([abs(final_window(v)) for v in entry["pairs"].values()]),
                    "imbalance": spread(list(entry["changes"].values())),
                    "delta_m": _nanmean(list(entry["changes"].values())),
                }
            )
        return out

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        checks: dict[str, verdicts.Check] = {}
        for kind, key in (("cos", "cos_converges"), ("norm", "norms_converge")):
            results, parts = [], []
            for label in reports:
                uniform = _nanmean([s[kind] for s in self._spreads(label, "unit_scal")])
                for method in BALANCED:
                    value = _nanmean([s[kind] for s in self._spreads(label, method)])
                    if math.isfinite(uniform) and math.isfinite(value):
                        results.append(value < uniform)
                        parts.append(f"{label} {method} {value:.3g} vs uniform {uniform:.3g}")
            what = (
                "std over tasks of the final-window cosine" if kind == "cos" else "std over tasks of log |w_i| ||g_i||"
            )
            checks[key] = verdicts.qualitative(
                (sum(results) > len(results) / 2) if results else None,
                f"{what}: " + ("; ".join(parts) or "not recorded") + f" ({sum(results)} of {len(results)} smaller)",
            )
        results, parts = [], []
        for label in reports:
            for method in METHODS:
                for s in self._spreads(label, method):
                    if math.isfinite(s["pair_abs_first"]) and math.isfinite(s["pair_abs_last"]):
                        results.append(s["pair_abs_last"] < s["pair_abs_first"])
                        parts.append(f"{label} {method} {s['pair_abs_first']:.2f} -> {s['pair_abs_last']:.2f}")
        checks["pairs_orthogonal"] = verdicts.qualitative(
            (sum(results) > len(results) / 2) if len(results) else None,
            "mean |cos| over task pairs, first -> final window: " + ("; ".join(parts) or "not recorded"),
        )
        points = [s for label in reports for m in METHODS for s in self._spreads(label, m)]
        imbalance = [p["imbalance"] for p in points]
        rho_norm = rank_correlation([p["norm"] for p in points], imbalance)
        rho_pair = rank_correlation([p["pair_cos"] for p in points], imbalance)
        rho_cos = rank_correlation([p["cos"] for p in points], imbalance)
        if math.isfinite(rho_norm) and math.isfinite(rho_pair):
            condition: bool | None = rho_norm > 0 and rho_norm > abs(rho_pair)
        else:
            condition = None
        checks["norm_not_direction"] = verdicts.qualitative(
            condition,
            f"over {len(points)} runs, Spearman with the imbalance (std over tasks of M_i): "
            f"norm spread {rho_norm:+.2f}, "
            f"mean pairwise cosine {rho_pair:+.2f} (cosine-to-aggregate spread {rho_cos:+.2f}); "
            "holds when the norm's is positive and larger than the pairwise cosine's in magnitude",
        )
        for key, check in checks.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        outcome.notes.append(
            "Windows are epochs (002: 2k/10k iterations); the layer is the encoder's last parameterised module "
            "(as AvgNorm's; for the dilated ResNet its last BatchNorm); d is the gradient the method left on it."
        )
        for label in reports:
            tasks = [t for t, _, _ in COLUMNS[DATASETS[label]]]
            lines = [
                "| method | "
                + " | ".join(f"cos_{t}" for t in tasks)
                + " | "
                + " | ".join(f"wnorm_{t}" for t in tasks)
                + " | norm spread | cos spread | mean pair cos | imbalance (std M_i) | Δm (%) |",
                "|---" * (2 * len(tasks) + 6) + "|",
            ]
            for method in METHODS:
                entries = self._summary.get(label, {}).get(method, [])
                if not entries:
                    continue
                cos = [_nanmean([final_window(e["series"][f"cos.{t}"]) for e in entries]) for t in tasks]
                norm = [_nanmean([final_window(e["series"][f"wnorm.{t}"]) for e in entries]) for t in tasks]
                s = self._spreads(label, method)
                agg = {k: _nanmean([x[k] for x in s]) for k in ("norm", "cos", "pair_cos", "imbalance", "delta_m")}
                lines.append(
                    f"| {method} | "
                    + " | ".join(_fmt(v) for v in cos + norm)
                    + " | "
                    + " | ".join(_fmt(agg[k]) for k in ("norm", "cos", "pair_cos", "imbalance", "delta_m"))
                    + " |"
                )
            outcome.tables[f"{label}: final window per task ({outcome.scale} scale)"] = "\n".join(lines)
        figure = self._figure(reports, context)
        if figure:
            outcome.figures.append(figure)

    def _figure(self, reports: Mapping[str, Any], context: StudyContext) -> str | None:
        """Figs. 7/8 and 14/15 as one panel grid: per method, cos(g_i, d) and |w_i| ||g_i|| per epoch."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        labels = [label for label in reports if self._summary.get(label)]
        if not labels:
            return None
        fig, axes = plt.subplots(2 * len(labels), len(METHODS), figsize=(3.2 * len(METHODS), 2.6 * 2 * len(labels)))
        axes = [[axes]] if not hasattr(axes, "shape") else axes.reshape(2 * len(labels), len(METHODS))
        for row, label in enumerate(labels):
            tasks = [t for t, _, _ in COLUMNS[DATASETS[label]]]
            for col, method in enumerate(METHODS):
                entries = self._summary[label].get(method, [])
                for kind, offset in (("cos", 0), ("wnorm", 1)):
                    ax = axes[2 * row + offset][col]
                    for task in tasks:
                        if entries:
                            ax.plot(entries[0]["series"][f"{kind}.{task}"], label=task)
                    ax.set_title(f"{label} {method}", fontsize=8)
                    ax.set_ylabel("cos(g_i, d)" if kind == "cos" else "|w_i| ||g_i||", fontsize=8)
                    if kind == "wnorm":
                        ax.set_yscale("log")
                    ax.set_xlabel("epoch", fontsize=8)
                    if entries:
                        ax.legend(fontsize=6)
        fig.tight_layout()
        context.out.mkdir(parents=True, exist_ok=True)
        path = context.out / "gradients_002.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return str(path)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3g}"
