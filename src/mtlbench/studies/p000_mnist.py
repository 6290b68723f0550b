"""``000-mnist``: Gama & Grassi (000), Fig. 1, Table 3 and Table 7 -- the 16 SMTOs on Multi-MNIST CL_RR.

The sweep is the built-in ``mnist_cl_rr`` (000 section 3.1: grid search, five search seeds, ten final
seeds, selection by validation Delta_m). Published: Table 3's mean test Delta_m per method (per task CL
and RR, and their average; 000's convention is ours: percent, higher is better) and Table 7's selected
learning rate and dropout per method. Claims: "the majority [of SMTOs] outperforms [Unit. Scal.]
significantly" (section 3.1) -- checked on the eight SMTOs 000 then shortlists -- and that the
loss-based methods 000 did not shortlist (SI, UW, RLW) do not beat Unit. Scal. (Table 3: all below it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mtlbench.studies import register_study
from mtlbench.studies.base import Cell, CellResult, Published, ScaleInfo, StudyContext, StudyOutcome, cell_value
from mtlbench.studies.sweep_study import MethodClaim, StudySweep, SweepStudy, published_delta, test_scale_overlay
from mtlbench.studies.sweeps import final_metric

SHORTLIST = ("edm", "imtl", "cagrad", "rotograd", "nash_mtl", "auto_lambda", "cdtt", "famo")
#: 000 Table 3: method -> (CL, RR, avg) mean test Delta_m in percent
TABLE_3: dict[str, tuple[float, float, float]] = {
    "unit_scal": (-1.043, -16.86, -8.952),
    "auto_lambda": (-1.232, -7.186, -4.209),
    "cagrad": (-1.685, -2.590, -2.137),
    "cdtt": (-1.546, -3.596, -2.571),
    "edm": (-1.613, -2.993, -2.303),
    "famo": (-4.587, -0.745, -2.666),
    "graddrop": (-1.076, -22.04, -11.56),
    "imtl": (-2.513, -1.975, -2.244),
    "mgda_ub": (-1.448, -11.26, -6.352),
    "nash_mtl": (-1.695, -4.430, -3.063),
    "pcgrad": (-1.039, -15.36, -8.201),
    "rlw_dirichlet": (-1.145, -19.48, -10.31),
    "rlw_normal": (-1.100, -18.53, -9.817),
    "rotograd": (-2.705, -1.572, -2.139),
    "si": (-0.962, -27.47, -14.21),
    "uw": (-1.109, -26.30, -13.70),
}
#: 000 Table 7 (CL & RR): method -> (lr, dropout p, weight decay) of the selected configuration
TABLE_7: dict[str, tuple[float, float, float]] = {
    "unit_scal": (0.001, 0.0, 0.0),
    "auto_lambda": (0.001, 0.0, 0.0),
    "cagrad": (0.001, 0.0, 0.0),
    "cdtt": (0.0025, 0.0, 0.0),
    "edm": (0.001, 0.0, 0.0),
    "famo": (0.0025, 0.0, 0.0),
    "graddrop": (0.001, 0.0, 0.0),
    "imtl": (0.001, 0.0, 0.0),
    "mgda_ub": (0.001, 0.0, 0.0),
    "nash_mtl": (0.001, 0.0, 0.0),
    "pcgrad": (0.001, 0.0, 0.0),
    "rlw_dirichlet": (0.001, 0.0, 0.0),
    "rlw_normal": (0.001, 0.0, 0.0),
    "rotograd": (0.001, 0.0, 0.0),
    "si": (0.001, 0.0, 0.0),
    "uw": (0.001, 0.0, 0.0),
}
SWEEP = "CL_RR"
#: the method-specific values of 000's code for CL_RR (as the spec's smoke scale)
METHOD_VALUES = {
    "auto_lambda": {"lr_scale": [1.0]},
    "cagrad": {"c": [0.8]},
    "cdtt": {"alpha": [0.2]},
    "famo": {"gamma": [0.0001]},
    "rotograd": {"lr_scale": [1.0]},
}
#: cpu scale: no grid search -- each method at 000's selected configuration (Table 7 and the code's
#: method-specific values), 10,000 training images, 5 epochs, three seeds (56 runs of ~10-40 s)
CPU_OVERLAY = {
    "problem_options": {"train_size": 10000},
    "settings": {"epochs": 5},
    "grid": {"lr": [0.001], "dropout": [0.0]},
    "method_grids": {
        method: {**METHOD_VALUES.get(method, {}), **({"lr": [lr]} if lr != 0.001 else {})}
        for method, (lr, _, _) in TABLE_7.items()
        if method in METHOD_VALUES or lr != 0.001
    },
    "search_seeds": 1,
    "final_seeds": 3,
    "references": {"search_seeds": 1, "final_seeds": 3, "grid": {"lr": [0.0025], "dropout": [0.0, 0.5]}},
}
TASK_COLUMNS = {"CL": 0, "RR": 1}


@register_study
class Mnist000(SweepStudy):
    name = "000-mnist"
    paper = "000"
    title = "The 16 SMTOs against Unit. Scal. on Multi-MNIST (classify left, reconstruct right)"
    targets = "Fig. 1, Table 3, Table 7"
    problems = ("multi_mnist",)
    description = "mnist_cl_rr: grid search, selection on validation Δm, final seeds; Δm per task and average."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Unit. Scal. and CAGrad, 1 seed, 1 epoch on a few hundred images", 4, 0.001),
        "smoke": ScaleInfo("16 methods, 512 images, 1 epoch, 1 configuration, 2 seeds", 40, 0.1),
        "cpu": ScaleInfo(
            "16 methods at 000's selected configuration (Table 7; no grid search), 10,000 images, 5 epochs, 3 seeds",
            56,
            0.3,
        ),
        "paper": ScaleInfo("000's protocol: 60k images, 100 epochs, full grids, 5+10 seeds", 9000, 900.0, 150.0),
    }
    sweeps = (
        StudySweep(
            "mnist_cl_rr",
            SWEEP,
            overlays={
                "test": test_scale_overlay(
                    ["unit_scal", "cagrad"], problem_options={"train_size": 200, "partners": "seeded"}
                ),
                "cpu": CPU_OVERLAY,
            },
        ),
    )
    published: ClassVar[Mapping[tuple[str, str], Published]] = {
        (SWEEP, method): published_delta(row[2], "000 Table 3 (avg)", "mean test Δm of 10 seeds")
        for method, row in TABLE_3.items()
    }
    method_claims = (
        MethodClaim(
            "majority_beats",
            "The majority of the shortlisted SMTOs significantly outperform Unit. Scal.",
            "000 section 3.1, Fig. 1",
            SWEEP,
            SHORTLIST,
            kind="beats",
            require="majority",
        ),
        MethodClaim(
            "loss_based_do_not_beat",
            "SI, UW and RLW (Dirichlet, Normal) do not beat Unit. Scal. (margin 1 Δm point)",
            "000 Table 3",
            SWEEP,
            ("si", "uw", "rlw_dirichlet", "rlw_normal"),
            kind="not_beaten",
            margin=1.0,
        ),
    )

    def cells(self) -> list[Cell]:
        cells = super().cells()
        for method, row in TABLE_3.items():
            for task, column in TASK_COLUMNS.items():
                published = published_delta(row[column], f"000 Table 3 ({task})", "mean test Δm of 10 seeds")
                cells.append(Cell(f"{SWEEP}/{method}/{task}", f"{SWEEP}: {method} Δm {task}", published, "higher", "%"))
        return cells

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        """Per-task Delta_m cells (against the sweep's test references) and Table 7 beside our selection."""
        from mtlbench.metrics import relative_changes
        from mtlbench.problems import create_problem

        report = reports[SWEEP]
        spec = report.spec
        problem = create_problem(spec.problem, spec.tasks, **spec.problem_options)
        directions = {t.name: {m.name: m.higher_is_better for m in t.metrics} for t in problem.tasks}
        reference: dict[str, dict[str, float]] = {}
        for ref in report.references:
            if ref.value and ref.value.get("test") is not None:
                reference.setdefault(ref.task, {})[ref.metric] = float(ref.value["test"])
        by_key = {cell.key: cell for cell in self.cells()}
        for result in report.methods:
            per_task: dict[str, list[float]] = {}
            seeds = set()
            for task in directions:
                for metric in directions[task]:
                    seeds |= set(final_metric(report, result.method, task, metric))
            for seed in sorted(seeds):
                metrics = {
                    task: {m: final_metric(report, result.method, task, m).get(seed) for m in directions[task]}
                    for task in directions
                }
                if any(v is None for t in metrics.values() for v in t.values()) or not reference:
                    continue
                try:
                    changes = relative_changes(metrics, reference, directions)
                except Exception:  # a missing reference metric: no per-task cell
                    continue
                for task, values in changes.items():
                    per_task.setdefault(task, []).append(sum(values.values()) / len(values))
            for task, values in per_task.items():
                cell = by_key.get(f"{SWEEP}/{result.method}/{task}")
                if cell is not None:
                    mean, ci, n = cell_value(values)
                    outcome.put(CellResult(cell, mean, ci, n))
        rows = ["| method | 000 Table 7 lr / p / wd | ours (selected) |", "|---|---|---|"]
        for result in report.methods:
            published = TABLE_7.get(result.method)
            best = result.selection.best
            ours = (
                "-"
                if best is None
                else ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.values.items())
            )
            shown = "-" if published is None else f"{published[0]:g} / {published[1]:g} / {published[2]:g}"
            rows.append(f"| {result.method} | {shown} | {ours} |")
        outcome.tables["Selected hyperparameters (000 Table 7)"] = "\n".join(rows)
