"""``002-imbalance``: Guo et al. (002), Tables II and III -- per task, multi-task relative to single-task learning.

Vanilla MTL (a dilated ResNet shared, one DeepLab head per task; built-in sweeps ``nyud_002`` and
``pascal_002``) on NYUD-v2 and PASCAL-Context with ResNet-18, and on NYUD-v2 with ResNet-50 (Table III):
uniform weights (Unit. Scal.), 002's grid-searched weights (NYUD 1/1/2/50, PASCAL 1/2/5/5/50; the
``fixed_weights`` method, used as given) and the MTOs of Table II that mtlbench has (UW, GradNorm, DWA,
MGDA, RLW (as `rlw_normal`, the softmax of a normal draw: 002 does not name the distribution), FAMO, PCGrad, CAGrad,
GradDrop, Nash-MTL, FairGrad; URL is not in mtlbench: its rows are listed
without our value). Where the data is not prepared the generated stand-ins run (synthetic_scenes presets
NYUD and PASCAL).

Delta_m is 002 eq. 5: the mean over tasks of M_i = (-1)^l_i (M_m,i - M_b,i) / M_b,i in percent, higher is
better, one metric per task -- the same sign and aggregation as mtlbench's (000's) Delta_m, so the published
values are shown as printed (``to_ours`` = 1). Per-task cells are M_i of every row against the same
table's single-task row, computed from the printed metrics (the imbalance 002 reads off Table II).
The MTAN rows of Table II belong to ``002-architectures``. The MTOs run with their defaults (002 searched
GradNorm's alpha and DWA's T only at the paper scale: the ``paper`` overlay adds those grids).
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
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_metric, final_values

#: 002 Table II/III row label -> mtlbench method (None: not in mtlbench)
ROWS: dict[str, str | None] = {
    "Uniform": "unit_scal",
    "Grid Search": "fixed_weights",
    "UW": "uw",
    "GradNorm": "gradnorm",
    "DWA": "dwa",
    "MGDA": "mgda",
    "RLW": "rlw_normal",
    "FAMO": "famo",
    "PCGrad": "pcgrad",
    "CAGrad": "cagrad",
    "GradDrop": "graddrop",
    "URL": None,
    "NashMTL": "nash_mtl",
    "FairGrad": "fairgrad",
}
MTOS = tuple(m for m in ROWS.values() if m not in (None, "unit_scal", "fixed_weights"))
#: task columns (task, metric, higher is better)
COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "nyud": (("S", "miou", True), ("D", "rmse", False), ("N", "merr", False), ("E", "odsf", True)),
    "pascal_context": (
        ("S", "miou", True),
        ("P", "miou", True),
        ("N", "merr", False),
        ("Sal", "maxf", True),
        ("E", "odsf", True),
    ),
}
# 002 Table II (ResNet-18) and Table III (ResNet-50, NYUD): row -> (metrics in COLUMNS order..., Delta_m %)
NYUD_R18: dict[str, tuple[float, ...]] = {
    "Single-task": (39.38, 0.6111, 21.94, 72.40, 0.00),
    "Uniform": (39.70, 0.6030, 23.37, 67.10, -2.93),
    "Grid Search": (39.87, 0.5999, 22.74, 72.40, -0.15),
    "UW": (39.90, 0.6084, 23.86, 67.70, -3.37),
    "GradNorm": (39.31, 0.5939, 22.95, 68.20, -1.95),
    "DWA": (39.66, 0.5961, 23.28, 67.40, -2.46),
    "MGDA": (38.89, 0.6071, 22.61, 66.80, -2.85),
    "RLW": (39.29, 0.6068, 23.57, 66.40, -3.82),
    "FAMO": (39.02, 0.6110, 23.34, 67.20, -3.62),
    "PCGrad": (39.12, 0.6001, 23.22, 67.40, -2.90),
    "CAGrad": (40.22, 0.6052, 23.03, 72.80, -0.34),
    "GradDrop": (39.38, 0.6020, 23.28, 67.00, -3.02),
    "URL": (40.17, 0.5940, 22.70, 71.00, -0.16),
    "NashMTL": (39.59, 0.5979, 22.37, 72.90, 0.35),
    "FairGrad": (39.91, 0.5953, 22.37, 72.70, 0.59),
}
PASCAL_R18: dict[str, tuple[float, ...]] = {
    "Single-task": (66.59, 61.29, 13.67, 84.77, 66.90, 0.00),
    "Uniform": (66.52, 60.02, 14.99, 83.25, 62.50, -4.04),
    "Grid Search": (65.10, 59.28, 14.39, 83.91, 65.50, -2.64),
    "UW": (66.25, 60.01, 15.60, 83.93, 64.30, -4.15),
    "GradNorm": (64.30, 59.31, 14.73, 84.29, 65.60, -3.38),
    "DWA": (66.75, 60.14, 14.92, 83.23, 62.60, -3.80),
    "MGDA": (61.48, 54.41, 13.95, 82.13, 58.90, -7.19),
    "RLW": (64.83, 59.04, 15.38, 82.56, 60.40, -6.23),
    "FAMO": (66.39, 59.99, 14.97, 83.04, 62.30, -4.17),
    "PCGrad": (66.17, 60.46, 14.82, 83.32, 63.60, -3.41),
    "CAGrad": (65.95, 59.98, 14.98, 83.24, 66.60, -2.98),
    "GradDrop": (66.69, 59.93, 14.95, 83.02, 61.10, -4.42),
    "URL": (66.61, 60.82, 14.19, 84.96, 65.30, -1.32),
    "NashMTL": (66.37, 60.60, 14.65, 84.23, 66.50, -2.40),
    "FairGrad": (64.69, 59.82, 14.71, 83.43, 66.10, -3.12),
}
NYUD_R50: dict[str, tuple[float, ...]] = {
    "Single-task": (42.94, 0.5905, 20.54, 73.40, 0.00),
    "Uniform": (43.70, 0.5733, 21.71, 73.50, -0.22),
    "Grid Search": (43.98, 0.5735, 21.47, 74.60, 0.60),
    "UW": (44.00, 0.5754, 22.10, 73.80, -0.76),
    "GradNorm": (44.55, 0.5801, 21.49, 73.70, 0.58),
    "DWA": (44.00, 0.5764, 21.59, 73.80, 0.32),
    "MGDA": (43.33, 0.5776, 21.29, 73.70, 0.21),
    "RLW": (43.69, 0.5816, 21.74, 73.40, -0.64),
    "FAMO": (43.66, 0.5754, 21.76, 73.80, -0.57),
    "PCGrad": (44.28, 0.5713, 21.62, 73.90, 0.67),
    "CAGrad": (43.84, 0.5789, 21.70, 74.60, 0.02),
    "GradDrop": (43.53, 0.5804, 21.71, 73.70, -0.55),
    "URL": (44.98, 0.5598, 20.84, 74.20, 1.91),
    "NashMTL": (43.93, 0.5741, 21.17, 74.60, 0.62),
    "FairGrad": (43.97, 0.5694, 21.16, 74.40, 0.76),
}
#: sweep label -> (dataset, table rows, source)
TABLES: dict[str, tuple[str, dict[str, tuple[float, ...]], str]] = {
    "NYUD-R18": ("nyud", NYUD_R18, "002 Table II (NYUD-v2, ResNet-18)"),
    "PASCAL-R18": ("pascal_context", PASCAL_R18, "002 Table II (PASCAL-Context, ResNet-18)"),
    "NYUD-R50": ("nyud", NYUD_R50, "002 Table III (NYUD-v2, ResNet-50)"),
}
AGGREGATION = "best checkpoint on test, one run (002 eq. 5: mean over tasks of M_i)"


def relative_change(value: float, reference: float, higher: bool) -> float:
    """002's M_i in percent: (-1)^l (M_m - M_b) / M_b * 100, l = 1 where lower is better."""
    sign = 1.0 if higher else -1.0
    return sign * (value - reference) / reference * 100.0


def delta_m_002(row: Sequence[float], reference: Sequence[float], columns: Sequence[tuple[str, str, bool]]) -> float:
    """002 eq. 5: the mean over tasks of M_i (percent)."""
    changes = [relative_change(v, r, h) for v, r, (_, _, h) in zip(row, reference, columns, strict=True)]
    return sum(changes) / len(changes)


def inconsistent_rows(tolerance: float = 0.015) -> str:
    """The table rows whose printed Delta_m differs from eq. 5 on their printed metrics (beyond rounding)."""
    found = []
    for label, (dataset, rows, _) in TABLES.items():
        reference = rows["Single-task"][:-1]
        for row, values in rows.items():
            recomputed = delta_m_002(values[:-1], reference, COLUMNS[dataset])
            if abs(recomputed - values[-1]) > tolerance:
                found.append(f"{label} {row} (printed {values[-1]:+.2f}, eq. 5 {recomputed:+.2f})")
    return "; ".join(found) + " -- the cells show the printed values"


def published_rows(
    label: str, dataset: str, rows: Mapping[str, Sequence[float]], source: str, methods: Mapping[str, str | None]
) -> dict[str, Published]:
    """Cells of one table: ``{cell key: Published}`` for Delta_m and every task's M_i of each row."""
    columns = COLUMNS[dataset]
    reference = rows["Single-task"][:-1]
    out: dict[str, Published] = {}
    for row, values in rows.items():
        if row == "Single-task":
            continue
        key = methods.get(row) or row.lower().replace(" ", "_")
        note = "" if methods.get(row) else "not in mtlbench: listed without our value"
        out[f"{label}/{key}/delta_m"] = Published(
            values[-1], f"{source}, row {row}", "higher", AGGREGATION, "%", note=note
        )
        for (task, metric, higher), value, ref in zip(columns, values[:-1], reference, strict=True):
            out[f"{label}/{key}/{task}"] = Published(
                round(relative_change(value, ref, higher), 4),
                f"{source}, row {row}: M_i of {task} {metric} computed from the printed metrics",
                "higher",
                "relative to the table's single-task row",
                "%",
                note=note,
            )
    return out


def task_changes(report: Any, method: str, dataset: str) -> dict[str, list[float]]:
    """Our M_i (percent) per task of a method's final runs, against the sweep's test references."""
    reference: dict[tuple[str, str], float] = {}
    for ref in report.references:
        if ref.value and ref.value.get("test") is not None:
            reference[(ref.task, ref.metric)] = float(ref.value["test"])
    out: dict[str, list[float]] = {}
    for task, metric, higher in COLUMNS[dataset]:
        base = reference.get((task, metric))
        if base is None or base == 0:
            continue
        out[task] = [relative_change(v, base, higher) for v in final_metric(report, method, task, metric).values()]
    return out


def compare(
    report: Any, methods: Sequence[str], baseline: str, alternative: str = "greater", require: str = "all"
) -> verdicts.Check:
    """Each of ``methods`` against ``baseline`` on test Delta_m, paired over seeds, Holm (a difference)."""
    if report is None:
        return verdicts.Check(verdicts.INCONCLUSIVE, "sweep not run at this scale")
    ran = {r.method for r in report.methods}
    if baseline not in ran:
        return verdicts.Check(verdicts.INCONCLUSIVE, f"{baseline} not run at this scale")
    base = final_values(report, baseline)
    comparisons = {m: (final_values(report, m), base) for m in methods if m in ran}
    if not comparisons:
        return verdicts.Check(verdicts.INCONCLUSIVE, "none of the claim's methods ran at this scale")
    checks = verdicts.check_family(comparisons, claim="difference", alternative=alternative)  # type: ignore[arg-type]
    combined = verdicts.combine(checks, require=require)  # type: ignore[arg-type]
    detail = "; ".join(f"{m}: {c.verdict} ({c.detail})" for m, c in checks.items())
    missing = [m for m in methods if m not in ran]
    if missing:
        detail += f"; not run at this scale: {', '.join(missing)}"
        if combined.verdict == verdicts.HOLDS and require == "all":
            return verdicts.Check(verdicts.INCONCLUSIVE, detail)
    return verdicts.Check(combined.verdict, detail)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


SMOKE_METHODS = ["unit_scal", "fixed_weights", "cagrad", "nash_mtl", "fairgrad", "mgda", "rlw_normal"]
PAPER_GRIDS = {
    "method_grids": {
        "gradnorm": {"alpha": [0.1, 0.2, 0.5, 1.0, 1.5, 2.0]},
        "dwa": {"temperature": [0.5, 1, 1.5, 2, 2.5, 3, 4]},
    }
}


@register_study
class Imbalance002(SweepStudy):
    name = "002-imbalance"
    paper = "002"
    title = "How pervasive is imbalance: MTL relative to STL, uniform vs grid-searched weights vs MTOs"
    targets = "Tables II, III"
    problems = ("nyud", "pascal_context", "synthetic_scenes")
    description = "nyud_002 / pascal_002 (ResNet-18) and nyud_002 with ResNet-50: per-task M_i and Δm (002 eq. 5)."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, uniform vs grid-searched, 1 seed, 1 epoch, tiny", 4, 0.002),
        "smoke": ScaleInfo("3 sweeps, 7 methods, stand-ins, 5 epochs, 1 seed", 30, 0.5),
        "cpu": ScaleInfo("3 sweeps, 13 methods, stand-ins at 64 px, 10-15 epochs, 1 seed", 50, 1.5),
        "paper": ScaleInfo("002's ResNet protocol (Table IX), 13 methods, GradNorm/DWA grids", 60, 400.0, 100.0),
    }
    sweeps = (
        StudySweep(
            "nyud_002",
            "NYUD-R18",
            overlays={
                "test": test_scale_overlay(["unit_scal", "fixed_weights"]),
                "smoke": {"methods": SMOKE_METHODS},
                "cpu": {"methods": ["unit_scal", "fixed_weights", *MTOS]},
                "paper": {"methods": ["unit_scal", "fixed_weights", *MTOS], **PAPER_GRIDS},
            },
            stand_in=stand_ins.dense_002("nyud"),
        ),
        StudySweep(
            "pascal_002",
            "PASCAL-R18",
            overlays={
                "smoke": {"methods": SMOKE_METHODS},
                "cpu": {"methods": ["unit_scal", "fixed_weights", *MTOS]},
                "paper": {"methods": ["unit_scal", "fixed_weights", *MTOS], **PAPER_GRIDS},
            },
            stand_in=stand_ins.dense_002("pascal_context"),
            scales=("smoke", "cpu", "paper"),
        ),
        StudySweep(
            "nyud_002",
            "NYUD-R50",
            overlays={
                "smoke": {"methods": SMOKE_METHODS, "problem_options": {"encoder": "resnet50"}},
                "cpu": {"methods": ["unit_scal", "fixed_weights", *MTOS], "problem_options": {"encoder": "resnet50"}},
                "paper": {
                    "methods": ["unit_scal", "fixed_weights", *MTOS],
                    "problem_options": {"encoder": "resnet50"},
                    **PAPER_GRIDS,
                },
            },
            stand_in=stand_ins.dense_002("nyud"),
            scales=("smoke", "cpu", "paper"),
        ),
    )

    def execute(self, context: StudyContext) -> StudyOutcome:
        outcome = super().execute(context)
        outcome.notes = list(dict.fromkeys(outcome.notes))  # one note per stand-in, not per sweep
        return outcome

    def _published_cells(self) -> dict[str, Published]:
        out: dict[str, Published] = {}
        for label, (dataset, rows, source) in TABLES.items():
            out.update(published_rows(label, dataset, rows, source, ROWS))
        return out

    def cells(self) -> list[Cell]:
        cells = []
        for key, published in self._published_cells().items():
            label, method, what = key.split("/")
            text = f"{label}: {method} " + ("Δm" if what == "delta_m" else f"M_{what}")
            cells.append(Cell(key, text, published, "higher", "%"))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "uniform_imbalanced",
                "Uniform is imbalanced on NYUD: some task gains on STL (depth) while others lose (normals, edge)",
                "002 section V-A, Table II",
                "qualitative",
            ),
            Claim(
                "grid_beats_uniform",
                "Grid-searched weights mitigate the imbalance: higher Δm than uniform (NYUD and PASCAL, ResNet-18)",
                "002 section V-A, Table II",
            ),
            Claim(
                "mtos_beat_uniform",
                "Nash-MTL and FairGrad significantly surpass uniform on NYUD (ResNet-18)",
                "002 section V-B, Table II",
            ),
            Claim(
                "mgda_rlw_worse",
                "MGDA and RLW perform worse than uniform on PASCAL-Context",
                "002 section V-B, Table II",
            ),
            Claim(
                "stronger_backbone",
                "A stronger backbone helps the MTOs: the mean Δm of the methods is higher with ResNet-50 than "
                "ResNet-18 on NYUD",
                "002 section V-B, Tables II-III",
                "qualitative",
            ),
        ]

    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        for label, report in reports.items():
            dataset = TABLES[label][0]
            for result in report.methods:
                key = f"{label}/{result.method}/delta_m"
                cell = by_key.get(key) or Cell(
                    key, f"{label}: {result.method} Δm", Published(None, "not in the paper", note="mtlbench extra")
                )
                mean, ci, n = cell_value(list(final_values(report, result.method).values()))
                outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else "no completed final run"))
                for task, values in task_changes(report, result.method, dataset).items():
                    key = f"{label}/{result.method}/{task}"
                    if key in by_key:
                        mean, ci, n = cell_value(values)
                        outcome.cells.append(CellResult(by_key[key], mean, ci, n))
        shown = {r.cell.key for r in outcome.cells}
        for key, cell in by_key.items():
            if key not in shown:
                reason = "not in mtlbench" if cell.published.note else f"not run at {outcome.scale} scale"
                outcome.cells.append(CellResult(cell, None, None, 0, reason))

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        nyud, pascal, r50 = (reports.get(k) for k in ("NYUD-R18", "PASCAL-R18", "NYUD-R50"))
        checks: dict[str, verdicts.Check] = {}
        if nyud is None:
            checks["uniform_imbalanced"] = verdicts.qualitative(None, "NYUD not run")
        else:
            changes = {t: _mean(v) for t, v in task_changes(nyud, "unit_scal", "nyud").items()}
            known = {t: v for t, v in changes.items() if v is not None}
            shown = ", ".join(f"M_{t} {v:+.2f}%" for t, v in known.items())
            if len(known) < 2:
                checks["uniform_imbalanced"] = verdicts.qualitative(None, f"too few task values: {shown}")
            else:
                gains, losses = [t for t, v in known.items() if v > 0], [t for t, v in known.items() if v < 0]
                checks["uniform_imbalanced"] = verdicts.qualitative(
                    bool(gains) and bool(losses),
                    f"uniform: {shown} (gain on {gains or 'none'}, loss on {losses or 'none'})",
                )
        grid = [compare(r, ["fixed_weights"], "unit_scal") for r in (nyud, pascal) if r is not None]
        if grid:
            combined = verdicts.combine(dict(enumerate(grid)), require="all")
            detail = "; ".join(c.detail for c in grid) + (
                "" if pascal is not None else "; PASCAL not run at this scale"
            )
            verdict = combined.verdict
            if pascal is None and verdict == verdicts.HOLDS:
                verdict = verdicts.INCONCLUSIVE
            checks["grid_beats_uniform"] = verdicts.Check(verdict, detail)
        else:
            checks["grid_beats_uniform"] = verdicts.Check(verdicts.INCONCLUSIVE, "not run")
        checks["mtos_beat_uniform"] = compare(nyud, ["nash_mtl", "fairgrad"], "unit_scal")
        checks["mgda_rlw_worse"] = compare(pascal, ["mgda", "rlw_normal"], "unit_scal", alternative="less")
        if nyud is None or r50 is None:
            checks["stronger_backbone"] = verdicts.qualitative(None, "the ResNet-50 sweep did not run at this scale")
        else:
            common = sorted({r.method for r in nyud.methods} & {r.method for r in r50.methods})
            m18 = _mean([v for m in common for v in final_values(nyud, m).values()])
            m50 = _mean([v for m in common for v in final_values(r50, m).values()])
            if m18 is None or m50 is None:
                checks["stronger_backbone"] = verdicts.qualitative(None, "no completed runs")
            else:
                checks["stronger_backbone"] = verdicts.qualitative(
                    m50 > m18, f"mean Δm over {len(common)} methods: ResNet-50 {m50:+.2f}%, ResNet-18 {m18:+.2f}%"
                )
        for key, check in checks.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        outcome.notes.append(
            "002's Δm (eq. 5) has mtlbench's sign and aggregation (mean over tasks of the relative change, "
            "higher is better): published values are shown as printed. Our Δm is against this study's own "
            "single-task runs; on the stand-ins the numbers are not comparable with 002's."
        )
        outcome.notes.append(
            "URL (002's distillation baseline) is not in mtlbench: its rows are listed without our value."
        )
        outcome.notes.append(
            "Printed Δm that eq. 5 does not reproduce from the printed metrics: " + inconsistent_rows()
        )
        for label, report in reports.items():
            dataset = TABLES[label][0]
            header = [t for t, _, _ in COLUMNS[dataset]]
            lines = ["| method | " + " | ".join(f"M_{t} (%)" for t in header) + " | Δm (%) |"]
            lines.append("|---" * (len(header) + 2) + "|")
            for result in report.methods:
                changes = task_changes(report, result.method, dataset)
                cells = [changes.get(t) for t in header]
                text = [f"{_mean(c):+.2f}" if c else "-" for c in cells]
                delta = _mean(list(final_values(report, result.method).values()))
                lines.append(
                    f"| {result.method} | " + " | ".join(text) + f" | {'-' if delta is None else f'{delta:+.2f}'} |"
                )
            outcome.tables[f"{label}: per-task relative change to STL (ours, {outcome.scale} scale)"] = "\n".join(lines)
