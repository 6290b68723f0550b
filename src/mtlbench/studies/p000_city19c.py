"""``000-city19c``: Gama & Grassi (000), Fig. 4 and Table 4 -- the eight SMTOs on Cityscapes 19C.

The last step of the ladder (ResNet-18, 512x256, S19 + D + I; built-in sweep ``city_19c``, generated
street scenes ``scenes_19c`` where Cityscapes is not prepared). Published: Table 4's mean test
relative change per metric (segmentation acc and mIoU, disparity L1 abs and rel, instance L1 abs) and
its average Delta_m (percent, higher is better, as ours). Claim (Fig. 4 caption): "Most SMTOs
significantly surpass the Unit. Scal. baseline".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import Cell, CellResult, Published, ScaleInfo, StudyContext, StudyOutcome, cell_value
from mtlbench.studies.sweep_study import MethodClaim, StudySweep, SweepStudy, published_delta, test_scale_overlay
from mtlbench.studies.sweeps import final_metric

SMTOS = ("auto_lambda", "cagrad", "cdtt", "edm", "famo", "imtl", "nash_mtl", "rotograd")
#: 000 Table 4 columns -> (task, metric) of mtlbench's cityscapes problem
COLUMNS = (("S", "acc"), ("S", "miou"), ("D", "abs_err"), ("D", "rel_err"), ("I", "l1"))
#: 000 Table 4: method -> (S acc, S mIoU, D L1 abs, D L1 rel, I L1 abs, avg), mean relative change in percent
TABLE_4: dict[str, tuple[float, ...]] = {
    "unit_scal": (-2.120, -16.78, -8.542, -11.41, 3.492, -5.312),
    "auto_lambda": (-1.922, -15.02, -8.546, -9.317, 3.657, -4.582),
    "cagrad": (-0.977, -7.647, -6.709, -10.06, 3.325, -3.124),
    "cdtt": (-0.948, -8.954, 2.043, -0.224, 0.472, -1.190),
    "edm": (-0.225, -3.174, 0.990, -1.051, 2.468, 0.246),
    "famo": (-0.274, -3.268, 0.755, -2.212, 2.339, -0.054),
    "imtl": (-0.224, -2.759, 3.017, 0.993, 1.195, 0.570),
    "nash_mtl": (-0.290, -3.275, 0.297, -0.227, 1.409, -0.113),
    "rotograd": (-0.453, -4.484, 0.303, -3.493, -1.659, -1.908),
}
SWEEP = "19C"


@register_study
class City19C000(SweepStudy):
    name = "000-city19c"
    paper = "000"
    title = "The eight shortlisted SMTOs against Unit. Scal. on Cityscapes 19C"
    targets = "Fig. 4, Table 4"
    problems = ("cityscapes", "synthetic_scenes")
    description = "city_19c: per-metric relative change and Δm of Unit. Scal. and 8 SMTOs."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("generated scenes, Unit. Scal. and IMTL, 1 seed, 1 epoch", 5, 0.003),
        "smoke": ScaleInfo("9 methods, tiny scenes, 1 epoch, 2 seeds", 25, 0.3),
        "cpu": ScaleInfo("9 methods, 300 scenes at 256x128, 10 epochs, 2x2 grid, 3 seeds", 200, 40.0),
        "paper": ScaleInfo("000's protocol on Cityscapes 19C", 400, 2000.0, 600.0),
    }
    sweeps = (
        StudySweep(
            "city_19c",
            SWEEP,
            overlays={"test": test_scale_overlay(["unit_scal", "imtl"])},
            stand_in=stand_ins.cityscapes("19c"),
        ),
    )
    published: ClassVar[Mapping[tuple[str, str], Published]] = {
        (SWEEP, method): published_delta(row[-1], "000 Table 4 (avg)", "mean test Δm of the final seeds")
        for method, row in TABLE_4.items()
    }
    method_claims = (
        MethodClaim(
            "most_surpass",
            "Most SMTOs significantly surpass Unit. Scal. on 19C",
            "000 Fig. 4 caption, section 3.3",
            SWEEP,
            SMTOS,
            kind="beats",
            require="majority",
        ),
    )

    def cells(self) -> list[Cell]:
        cells = super().cells()
        for method, row in TABLE_4.items():
            for (task, metric), value in zip(COLUMNS, row[:-1], strict=True):
                published = published_delta(value, f"000 Table 4 ({task} {metric})", "mean relative change (%)")
                cells.append(
                    Cell(
                        f"{SWEEP}/{method}/{task}.{metric}",
                        f"{SWEEP}: {method} {task} {metric} Δ",
                        published,
                        "higher",
                        "%",
                    )
                )
        return cells

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        """Per-metric relative changes against the sweep's test references (Table 4's columns)."""
        from mtlbench.metrics import relative_changes
        from mtlbench.problems import create_problem

        report = reports[SWEEP]
        problem = create_problem(report.spec.problem, report.spec.tasks, **report.spec.problem_options)
        directions = {t.name: {m.name: m.higher_is_better for m in t.metrics} for t in problem.tasks}
        reference: dict[str, dict[str, float]] = {}
        for ref in report.references:
            if ref.value and ref.value.get("test") is not None:
                reference.setdefault(ref.task, {})[ref.metric] = float(ref.value["test"])
        by_key = {cell.key: cell for cell in self.cells()}
        for result in report.methods:
            for task, metric in COLUMNS:
                if task not in directions or metric not in directions[task] or metric not in reference.get(task, {}):
                    continue
                values = []
                for value in final_metric(report, result.method, task, metric).values():
                    change = relative_changes(
                        {task: {metric: value}}, {task: reference[task]}, {task: directions[task]}
                    )
                    values.append(change[task][metric])
                key = f"{SWEEP}/{result.method}/{task}.{metric}"
                if key in by_key:
                    mean, ci, n = cell_value(values)
                    outcome.put(CellResult(by_key[key], mean, ci, n))
