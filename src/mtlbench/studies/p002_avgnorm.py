"""``002-avgnorm``: Guo et al. (002), Tables VI and VII -- AvgNorm against 002's grid-searched loss weights.

AvgNorm (002 eq. 6, :mod:`mtlbench.methods.avgnorm`): w_i = ||sum_j g_j|| / ||g_i|| on the last layer of the
shared encoder, recomputed every step. 002 compares it with its grid-searched weights (NYUD 1/1/2/50, PASCAL
1/2/5/5/50) on ResNet-18 (and MTAN, not available here for these datasets) and prints, next to the metrics,
the *average* loss weights AvgNorm produced over training (NYUD: 1.22 / 2.47 / 3.97 / 114.0; PASCAL:
1.77 / 3.57 / 11.42 / 3.82 / 155.78). We run the built-in sweeps ``nyud_002`` and ``pascal_002`` (stand-ins
where the data is not prepared) with ``fixed_weights`` (002's weights) and ``avgnorm``, and report AvgNorm's
average weights as the mean over epochs of each epoch's mean applied weight (the epoch records' weights).

Claims: AvgNorm's Delta_m is comparable with grid search (002: "a comparable Delta_m performance is
obtained"; equivalence within a stated margin of 1 Delta_m point, TOST over seeds; 002's own differences are
+0.52 and +0.26) and its average weights are "highly similar" to the grid-searched ones (qualitative: the
edge task gets the largest weight and the ranks of the weights agree positively, Spearman > 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    Published,
    ScaleInfo,
    StudyContext,
    StudyOutcome,
    cell_value,
)
from mtlbench.studies.p002_imbalance import NYUD_R18, PASCAL_R18, published_rows, task_changes
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_epochs, final_values

#: 002 Table VI / VII, ResNet-18 rows: metrics in COLUMNS order, Delta_m (single-task row from Table II)
TABLE_VI = {
    "Single-task": NYUD_R18["Single-task"],
    "Grid Search": (39.87, 0.5999, 22.74, 72.40, -0.15),
    "AvgNorm": (40.04, 0.6011, 22.43, 72.70, 0.37),
}
TABLE_VII = {
    "Single-task": PASCAL_R18["Single-task"],
    "Grid Search": (65.10, 59.28, 14.39, 83.91, 65.50, -2.64),
    "AvgNorm": (65.94, 59.74, 14.67, 84.38, 66.50, -2.38),
}
#: task -> (grid-searched weight, AvgNorm's average weight) printed by 002 (lambda_t columns)
WEIGHTS: dict[str, dict[str, tuple[float, float]]] = {
    "NYUD": {"S": (1, 1.22), "D": (1, 2.47), "N": (2, 3.97), "E": (50, 114.0)},
    "PASCAL": {"S": (1, 1.77), "P": (2, 3.57), "N": (5, 11.42), "Sal": (5, 3.82), "E": (50, 155.78)},
}
SWEEPS = {
    "NYUD": ("nyud", TABLE_VI, "002 Table VI (NYUD-v2, ResNet-18)"),
    "PASCAL": ("pascal_context", TABLE_VII, "002 Table VII (PASCAL-Context, ResNet-18)"),
}
METHODS = {"Grid Search": "fixed_weights", "AvgNorm": "avgnorm"}
MARGIN = 1.0
#: an average weight above this comes from steps with a zero task gradient (AvgNorm's floor 1e-12): a batch
#: without a labelled pixel of the task (PASCAL's human parts on images without people)
BLOWN_UP = 1e6


def average_weights(epochs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean over epochs of each task's recorded (epoch-mean) weight."""
    sums: dict[str, list[float]] = {}
    for record in epochs:
        for task, value in (record.get("weights") or {}).items():
            sums.setdefault(task, []).append(float(value))
    return {task: sum(v) / len(v) for task, v in sums.items() if v}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import numpy as np
    from scipy.stats import spearmanr

    result = spearmanr(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return float(result.statistic)


@register_study
class AvgNorm002(SweepStudy):
    name = "002-avgnorm"
    paper = "002"
    title = "AvgNorm against grid-searched loss weights, with AvgNorm's average weights"
    targets = "Tables VI, VII"
    problems = ("nyud", "pascal_context", "synthetic_scenes")
    description = "nyud_002 / pascal_002: fixed_weights (002's grid) vs avgnorm; Δm, M_i and average weights."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, grid vs AvgNorm, 1 seed, tiny", 6, 0.002),
        "smoke": ScaleInfo("NYUD and PASCAL stand-ins, grid vs AvgNorm, 2 seeds, 5 epochs", 26, 0.3),
        "cpu": ScaleInfo(
            "NYUD and PASCAL stand-ins at 64 px, grid vs AvgNorm, 2 seeds (STL 1), 10-15 epochs; measured 27 min",
            17,
            0.45,
        ),
        "paper": ScaleInfo("002's ResNet-18 protocol, grid vs AvgNorm, 3 seeds", 30, 200.0, 50.0),
    }
    sweeps = (
        StudySweep(
            "nyud_002",
            "NYUD",
            overlays={
                "test": test_scale_overlay(["fixed_weights", "avgnorm"]),
                "smoke": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 2, "references": {"final_seeds": 2}},
                "cpu": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 2, "references": {"final_seeds": 1}},
                "paper": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 3, "references": {"final_seeds": 3}},
            },
            stand_in=stand_ins.dense_002("nyud"),
        ),
        StudySweep(
            "pascal_002",
            "PASCAL",
            overlays={
                "smoke": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 2, "references": {"final_seeds": 2}},
                "cpu": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 2, "references": {"final_seeds": 1}},
                "paper": {"methods": ["fixed_weights", "avgnorm"], "final_seeds": 3, "references": {"final_seeds": 3}},
            },
            stand_in=stand_ins.dense_002("pascal_context"),
            scales=("smoke", "cpu", "paper"),
        ),
    )

    def cells(self) -> list[Cell]:
        cells = []
        for label, (dataset, rows, source) in SWEEPS.items():
            for key, published in published_rows(label, dataset, rows, source, METHODS).items():
                _, method, what = key.split("/")
                text = f"{label}: {method} " + ("Δm" if what == "delta_m" else f"M_{what}")
                cells.append(Cell(key, text, published, "higher", "%"))
            for task, (_, avg) in WEIGHTS[label].items():
                published = Published(
                    avg,
                    f"{source}, row ours: λ_t of {task}",
                    "higher",
                    "average of AvgNorm's loss weights over training",
                    note="a loss weight (no better direction); compare with the grid-searched weight",
                )
                cells.append(Cell(f"{label}/avgnorm/weight.{task}", f"{label}: AvgNorm mean λ_{task}", published))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "comparable",
                "AvgNorm obtains a Δm comparable with the grid-searched weights (NYUD and PASCAL, ResNet-18)",
                "002 section V-F5, Tables VI-VII",
                "no_difference",
                f"margin {MARGIN:g} Δm points",
            ),
            Claim(
                "weights_like_grid",
                "AvgNorm's average loss weights are highly similar to the grid-searched ones "
                "(edge largest; ranks agree)",
                "002 section V-F5, Tables VI-VII",
                "qualitative",
            ),
        ]

    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        for label, report in reports.items():
            dataset = SWEEPS[label][0]
            for result in report.methods:
                key = f"{label}/{result.method}/delta_m"
                if key in by_key:
                    mean, ci, n = cell_value(list(final_values(report, result.method).values()))
                    outcome.cells.append(CellResult(by_key[key], mean, ci, n, "" if n else "no completed final run"))
                for task, values in task_changes(report, result.method, dataset).items():
                    if f"{label}/{result.method}/{task}" in by_key:
                        mean, ci, n = cell_value(values)
                        outcome.cells.append(CellResult(by_key[f"{label}/{result.method}/{task}"], mean, ci, n))
        shown = {r.cell.key for r in outcome.cells}
        for key, cell in by_key.items():
            if key not in shown and "/weight." not in key:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))
        self._weight_cells(outcome, reports, self._context)

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        comparisons = {
            label: (final_values(r, "avgnorm"), final_values(r, "fixed_weights")) for label, r in reports.items()
        }
        if comparisons:
            checks = verdicts.check_family(comparisons, claim="no_difference", margin=MARGIN, kind="equal")
            combined = verdicts.combine(checks, require="all")
            detail = "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
            verdict = combined.verdict
            if len(comparisons) < len(SWEEPS):
                detail += "; PASCAL not run at this scale"
                verdict = verdicts.INCONCLUSIVE if verdict == verdicts.HOLDS else verdict
            outcome.claims.append(ClaimResult(declared["comparable"], verdict, detail))
        else:
            outcome.claims.append(ClaimResult(declared["comparable"], verdicts.INCONCLUSIVE, "not run"))
        weights = self._weights
        results, parts = [], []
        for label, ours in weights.items():
            blown = [t for t in WEIGHTS[label] if t in ours and ours[t] > BLOWN_UP]
            tasks = [t for t in WEIGHTS[label] if t in ours and t not in blown]
            if len(tasks) < 2:
                continue
            grid = [WEIGHTS[label][t][0] for t in tasks]
            mine = [ours[t] for t in tasks]
            rho = spearman(mine, grid)
            edge_largest = max(tasks, key=lambda t: ours[t]) == "E"
            results.append(edge_largest and rho > 0)
            parts.append(
                f"{label}: ours "
                + "/".join(f"{t} {ours[t]:.3g}" for t in tasks)
                + f" vs grid {'/'.join(f'{g:g}' for g in grid)}, Spearman {rho:+.2f}, edge largest: {edge_largest}"
                + (
                    f" (left out: {', '.join(f'{t} {ours[t]:.3g}' for t in blown)} -- steps whose batch has no "
                    "labelled pixel of the task give ||g_i|| = 0 and AvgNorm's weight S/1e-12)"
                    if blown
                    else ""
                )
            )
        check = verdicts.qualitative(all(results) if results else None, "; ".join(parts) or "no AvgNorm run completed")
        outcome.claims.append(ClaimResult(declared["weights_like_grid"], check.verdict, check.detail))

    def execute(self, context: StudyContext) -> StudyOutcome:
        self._context = context
        self._weights: dict[str, dict[str, float]] = {}
        outcome = super().execute(context)
        outcome.notes.append(
            "AvgNorm's weights are the coefficients it applied (w_i = S/||g_i|| on the encoder's last layer; they "
            "do not sum to T); ours are the mean over epochs of each epoch's mean weight. 002's MTAN rows of "
            "Tables VI/VII are not run (no MTAN for these datasets in mtlbench)."
        )
        outcome.notes = list(dict.fromkeys(outcome.notes))  # one note per stand-in, not per sweep
        return outcome

    def _weight_cells(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        for label in SWEEPS:
            report = reports.get(label)
            per_seed = [] if report is None else list(final_epochs(context, report, "avgnorm").values())
            averages = [average_weights(epochs) for epochs in per_seed]
            if averages:
                self._weights[label] = {t: sum(a[t] for a in averages) / len(averages) for t in averages[0]}
            lines = [
                "| task | grid-searched λ | 002's AvgNorm mean λ | ours: AvgNorm mean λ | ours / ours(S) |",
                "|---|---|---|---|---|",
            ]
            for task, (grid, avg) in WEIGHTS[label].items():
                values = [a[task] for a in averages if task in a]
                mean, ci, n = cell_value(values)
                key = f"{label}/avgnorm/weight.{task}"
                note = "" if n else f"not run at {outcome.scale} scale"
                outcome.cells.append(CellResult(by_key[key], mean, ci, n, note))
                base = self._weights.get(label, {}).get("S")
                ratio = "-" if mean is None or not base else f"{mean / base:.3g}"
                lines.append(f"| {task} | {grid:g} | {avg:g} | {'-' if mean is None else f'{mean:.3g}'} | {ratio} |")
            if report is not None:
                outcome.tables[f"{label}: AvgNorm's average loss weights ({outcome.scale} scale)"] = "\n".join(lines)
