"""``002-data``: Guo et al. (002), Table V -- does data quality or quantity change the imbalance?

002 ran this on Replica (Omnidata; 3 tasks, InvPT, ViT): **Replica is not part of mtlbench** (not this
issue's scope); the study runs 002's operations on NYUD-v2's three tasks S/D/N (``nyud_002`` with
``tasks=S_D_N``, uniform weights), on the generated NYUD stand-in at test/smoke/cpu scale and on the real
``nyud`` at the paper scale. Each row trains its own single-task references and a multi-task run on the
changed training data; every Delta_m is, as in Table V, 002 eq. 5 against the *clean, full-data*
single-task runs (test data always clean and complete).

Operations (:mod:`mtlbench.problems.data_variants_002`, problem options ``label_noise``, ``noise_sigma``,
``subsample``):

- noise: segmentation -- 5 categories per image changed to a wrong category at rate 0.5; depth and normals --
  additive Gaussian noise with sigma ``noise_sigma`` (002 gives none; 0.1 m and 0.1 by default);
- less data on the stand-in by its generated scene ids (10 images a scene): 1/2 and 1/4 of each scene's
  images, 1 image per scene (Replica's "12 scans per scene" keep about 0.4% of its images; one of 10 is
  the closest the stand-in allows), 1/2 and 1/4 of the scenes, 1 scene; on the real ``nyud`` -- whose
  layouts carry no scene ids -- the same fractions of randomly drawn images (1/2, 1/4, 1/10, 1/2, 1/4, 1/18).

Published values are Table V's Delta_m (percent, higher is better, our sign); Replica's numbers are not
comparable with NYUD's, so the claims compare the *pattern*: noise hurts STL and MTL alike (no clear widening
of the MTL-STL gap), and less data hurts and widens the gap (more imbalance).
"""

from __future__ import annotations

from collections.abc import Mapping
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
)
from mtlbench.studies.p002_imbalance import delta_m_002
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_metric

TASKS = (("S", "miou", True), ("D", "rmse", False), ("N", "merr", False))
#: label -> (Table V row, stand-in options, real-data options, STL Delta_m, MTL Delta_m printed)
ROWS: dict[str, tuple[str, dict[str, Any], dict[str, Any], float, float]] = {
    "clean": ("Clean, full", {}, {}, 0.00, -3.21),
    "noise": ("Noise, full", {"label_noise": 0.5}, {"label_noise": 0.5}, -17.46, -19.69),
    "scans-half": (
        "1/2 number of scans (per scene)",
        {"subsample": "per_scene:0.5"},
        {"subsample": "images:0.5"},
        -0.54,
        -3.59,
    ),
    "scans-quarter": (
        "1/4 number of scans (per scene)",
        {"subsample": "per_scene:0.25"},
        {"subsample": "images:0.25"},
        -0.99,
        -6.38,
    ),
    "scans-12": ("12 scans (per scene)", {"subsample": "per_scene:1"}, {"subsample": "images:0.1"}, -2.92, -14.94),
    "scenes-half": (
        "1/2 number of scenes (all scans)",
        {"subsample": "scenes:0.5"},
        {"subsample": "images:0.5"},
        -1.10,
        -6.82,
    ),
    "scenes-quarter": (
        "1/4 number of scenes (all scans)",
        {"subsample": "scenes:0.25"},
        {"subsample": "images:0.25"},
        -0.19,
        -7.03,
    ),
    "scene-1": ("1 scene (all scans)", {"subsample": "scenes:1"}, {"subsample": "images:0.056"}, -1.76, -13.63),
}
LESS = tuple(k for k in ROWS if k not in ("clean", "noise"))
SOURCE = "002 Table V (Replica, 3 tasks, InvPT)"
#: the stand-in at smoke scale: 40 images (30 training = 3 scenes of 10)
SMOKE_IMAGES = 40
TOLERANCE = 1.0  # Delta_m points: "no clear widening" of the MTL-STL gap


def _overlays(label: str) -> dict[str, dict[str, Any]]:
    _, stand_in, real, _, _ = ROWS[label]
    base = {"tasks": "S_D_N", "methods": ["unit_scal"]}
    return {
        "test": test_scale_overlay(["unit_scal"], tasks="S_D_N", problem_options=stand_in),
        "smoke": {**base, "problem_options": {**stand_in, "n_images": SMOKE_IMAGES}},
        "cpu": {**base, "problem_options": stand_in},
        "paper": {**base, "problem_options": real},
    }


@register_study
class Data002(SweepStudy):
    name = "002-data"
    paper = "002"
    title = "Data quality (label noise) and quantity (less data by scenes) against the imbalance"
    targets = "Table V"
    problems = ("nyud", "synthetic_scenes")
    description = "nyud_002 on S/D/N: clean, noisy labels and six less-data variants; STL and uniform MTL Δm."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, clean and noisy, STL + uniform MTL, tiny", 8, 0.003),
        "smoke": ScaleInfo(
            "NYUD stand-in (40 images, 3 scenes), all 8 rows, 5 epochs; measured 30 min on a loaded machine", 28, 0.5
        ),
        "cpu": ScaleInfo("NYUD stand-in (120 images, 9 scenes) at 64 px, all 8 rows, 15 epochs", 32, 1.2),
        "paper": ScaleInfo("real NYUD-v2 S/D/N, 002's ResNet-18 protocol, image fractions", 32, 100.0, 25.0),
    }
    sweeps = tuple(
        StudySweep(
            "nyud_002",
            label,
            overlays=_overlays(label),
            stand_in=stand_ins.dense_002("nyud"),
            scales=("test", "smoke", "cpu", "paper") if label in ("clean", "noise") else ("smoke", "cpu", "paper"),
        )
        for label in ROWS
    )

    def cells(self) -> list[Cell]:
        cells = []
        for label, (row, _, _, stl, mtl) in ROWS.items():
            for kind, value in (("stl", stl), ("mtl", mtl)):
                published = Published(
                    value,
                    f"{SOURCE}, row {row}, {'Single-task' if kind == 'stl' else 'Multi-task'}",
                    "higher",
                    "Δm against the clean full-data single-task models (eq. 5)",
                    "%",
                )
                text = f"{label}: {'STL' if kind == 'stl' else 'uniform MTL'} Δm vs clean STL"
                cells.append(Cell(f"{label}/{kind}/delta_m", text, published, "higher", "%"))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "noise_hurts",
                "Label noise lowers both the STL and the MTL performance",
                "002 section V-E, Table V",
                "qualitative",
            ),
            Claim(
                "noise_not_imbalance",
                "No clear indication that noise exacerbates the imbalance: the MTL-STL gap does not widen by more "
                f"than {TOLERANCE:g} Δm point",
                "002 section V-E, Table V",
                "qualitative",
            ),
            Claim(
                "less_data_worse",
                "Models trained on less data perform worse (MTL, most less-data rows)",
                "002 section V-E, Table V",
                "qualitative",
            ),
            Claim(
                "less_data_imbalance",
                "MTL from less data is more imbalanced: the MTL-STL gap is wider than with all data (most rows)",
                "002 section V-E, Table V",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        self._deltas: dict[str, dict[str, float]] = {}
        outcome = super().execute(context)
        outcome.notes.append(
            "Replica (002's data for Table V) is not part of mtlbench: the operations run on NYUD-v2's S/D/N "
            "(the generated stand-in below the paper scale); published Δm are Replica's, for the pattern only."
        )
        outcome.notes.append(
            "Less data: the stand-in by its generated scene ids; the real nyud by random image fractions (its "
            "layouts carry no scene ids). Noise sigma (depth, normals) is ours: 002 does not give it."
        )
        outcome.notes = list(dict.fromkeys(outcome.notes))  # one note per stand-in, not per sweep
        return outcome

    @staticmethod
    def _reference(report: Any) -> dict[tuple[str, str], float]:
        return {
            (r.task, r.metric): float(r.value["test"]) for r in report.references if r.value and r.value.get("test")
        }

    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        clean = reports.get("clean")
        base = self._reference(clean) if clean is not None else {}
        lines = ["| row | STL S / D / N | MTL S / D / N | STL Δm | MTL Δm | gap |", "|---|---|---|---|---|---|"]
        for label in ROWS:
            report = reports.get(label)
            if report is None or not base:
                for kind in ("stl", "mtl"):
                    outcome.cells.append(
                        CellResult(
                            by_key[f"{label}/{kind}/delta_m"], None, None, 0, f"not run at {outcome.scale} scale"
                        )
                    )
                continue
            stl = self._reference(report)
            mtl = {}
            for task, metric, _ in TASKS:
                values = list(final_metric(report, "unit_scal", task, metric).values())
                if values:
                    mtl[(task, metric)] = sum(values) / len(values)
            keys = [(t, m) for t, m, _ in TASKS]
            columns = [(t, m, h) for t, m, h in TASKS]
            deltas = {}
            for kind, metrics in (("stl", stl), ("mtl", mtl)):
                if all(k in metrics and k in base for k in keys):
                    deltas[kind] = delta_m_002([metrics[k] for k in keys], [base[k] for k in keys], columns)
                    outcome.cells.append(CellResult(by_key[f"{label}/{kind}/delta_m"], deltas[kind], None, 1))
                else:
                    outcome.cells.append(
                        CellResult(by_key[f"{label}/{kind}/delta_m"], None, None, 0, "no completed run")
                    )
            self._deltas[label] = deltas

            gap = deltas["mtl"] - deltas["stl"] if len(deltas) == 2 else None
            lines.append(
                f"| {label} | {_row(stl, keys)} | {_row(mtl, keys)} | "
                f"{_f(deltas.get('stl'))} | {_f(deltas.get('mtl'))} | {_f(gap)} |"
            )
        outcome.tables[f"Table V on NYUD S/D/N ({outcome.scale} scale; Δm against the clean STL)"] = "\n".join(lines)

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        d = self._deltas
        clean, noise = d.get("clean", {}), d.get("noise", {})
        checks: dict[str, verdicts.Check] = {}
        if len(clean) == 2 and len(noise) == 2:
            checks["noise_hurts"] = verdicts.qualitative(
                noise["stl"] < clean["stl"] and noise["mtl"] < clean["mtl"],
                f"STL {clean['stl']:+.2f} -> {noise['stl']:+.2f}; MTL {clean['mtl']:+.2f} -> {noise['mtl']:+.2f}",
            )
            gap_clean, gap_noise = clean["mtl"] - clean["stl"], noise["mtl"] - noise["stl"]
            checks["noise_not_imbalance"] = verdicts.qualitative(
                gap_noise >= gap_clean - TOLERANCE, f"MTL-STL gap clean {gap_clean:+.2f}, noisy {gap_noise:+.2f}"
            )
        else:
            for key in ("noise_hurts", "noise_not_imbalance"):
                checks[key] = verdicts.qualitative(None, "clean or noisy row not complete at this scale")
        less = [k for k in LESS if len(d.get(k, {})) == 2]
        if len(clean) == 2 and less:
            worse = [k for k in less if d[k]["mtl"] < clean["mtl"]]
            checks["less_data_worse"] = verdicts.qualitative(
                len(worse) > len(less) / 2,
                f"MTL below the full-data MTL ({clean['mtl']:+.2f}) in {len(worse)} of {len(less)} rows: "
                + ", ".join(f"{k} {d[k]['mtl']:+.2f}" for k in less),
            )
            gap_clean = clean["mtl"] - clean["stl"]
            wider = [k for k in less if d[k]["mtl"] - d[k]["stl"] < gap_clean]
            checks["less_data_imbalance"] = verdicts.qualitative(
                len(wider) > len(less) / 2,
                f"gap wider than the full-data gap ({gap_clean:+.2f}) in {len(wider)} of {len(less)} rows: "
                + ", ".join(f"{k} {d[k]['mtl'] - d[k]['stl']:+.2f}" for k in less),
            )
        else:
            for key in ("less_data_worse", "less_data_imbalance"):
                checks[key] = verdicts.qualitative(None, "no less-data row at this scale")
        for key, check in checks.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))


def _row(metrics: Mapping[tuple[str, str], float], keys: list[tuple[str, str]]) -> str:
    return " / ".join(f"{metrics[k]:.4g}" if k in metrics else "-" for k in keys)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
