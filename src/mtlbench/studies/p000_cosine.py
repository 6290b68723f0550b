"""``000-cosine``: Gama & Grassi (000), Figs. 3a and 7 -- gradient similarity per problem configuration.

For each configuration, Unit. Scal. is trained with gradient diagnostics (``grad_metrics_every``) and the
mean over training of cos(g_i, mean_j g_j) on the shared parameters (000's ``dot_avg_dir``,
:mod:`mtlbench.training.diagnostics` ``batch.cos_to_mean``) is reported. 000's text (Appendix A.2.1) gives
approximate values: about 0.7 for MNIST CL_CR, RL_RR and City R50, R18; about 0.45 for City InstSeg, HR
and 19C; about 0.3 for QM9. Claims: the configurations where Unit. Scal. matched the SMTOs are more
similar than the harder Cityscapes steps, QM9 is the least similar, and City R50 is more similar than
Multi-MNIST CL_RR (Fig. 3a caption). Where Cityscapes or QM9 is not cached, their generated stand-ins run
(the output says so) -- their similarities say nothing about the real datasets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from mtlbench.analysis.claims import qualitative
from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import (
    Cell,
    Claim,
    ClaimResult,
    Published,
    ScaleInfo,
    StudyContext,
    StudyOutcome,
    no_number,
)
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay

GRAD = {"settings": {"grad_metrics_every": 5}}
TEST = {"settings": {"grad_metrics_every": 1}}
#: label -> (spec, stand-in or None, 000's approximate value or None)
CONFIGURATIONS: dict[str, tuple[str, Any, float | None]] = {
    "MNIST CL_CR": ("mnist_cl_cr", None, 0.7),
    "MNIST RL_RR": ("mnist_rl_rr", None, 0.7),
    "MNIST CL_RR": ("mnist_cl_rr", None, None),
    "City R50": ("city_r50", stand_ins.cityscapes("r50"), 0.7),
    "City R18": ("city_r18", stand_ins.cityscapes("r18"), 0.7),
    "City InstSeg": ("city_instseg", stand_ins.cityscapes("instseg"), 0.45),
    "City HR": ("city_hr", stand_ins.cityscapes("hr"), 0.45),
    "City 19C": ("city_19c", stand_ins.cityscapes("19c"), 0.45),
    "QM9": ("qm9", stand_ins.qm9(), 0.3),
}
EASY = ("MNIST CL_CR", "MNIST RL_RR", "City R50", "City R18")
HARD = ("City InstSeg", "City HR", "City 19C")
TEST_CONFIGURATIONS = ("MNIST CL_RR", "City R50")


def _overlays(label: str) -> dict[str, Any]:
    overlays: dict[str, Any] = {scale: GRAD for scale in ("smoke", "cpu", "paper")}
    if label in TEST_CONFIGURATIONS:
        extra = {"problem_options": {"train_size": 200, "partners": "seeded"}} if label.startswith("MNIST") else {}
        overlays["test"] = test_scale_overlay(["unit_scal"], settings={"grad_metrics_every": 1}, **extra)
    return overlays


def mean_cos_to_mean(epochs: list[dict[str, Any]]) -> float | None:
    """The mean over the epochs of one run of the epoch mean of ``batch.cos_to_mean``."""
    values = []
    for epoch in epochs:
        stats = ((epoch.get("extra") or {}).get("grad") or {}).get("batch", {}).get("cos_to_mean")
        if stats and stats.get("n") and stats.get("mean") is not None and math.isfinite(stats["mean"]):
            values.append(float(stats["mean"]))
    return sum(values) / len(values) if values else None


@register_study
class Cosine000(SweepStudy):
    name = "000-cosine"
    paper = "000"
    title = "Mean cosine between each task gradient and the average direction, per configuration"
    targets = "Figs. 3a and 7 (Appendix A.2.1)"
    problems = ("multi_mnist", "cityscapes", "synthetic_scenes", "qm9", "synthetic")
    description = "Unit. Scal. with gradient diagnostics on every configuration of 000; mean cos(g_i, mean g)."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("MNIST CL_RR and the R50 scenes, Unit. Scal., 1 seed, 1 epoch", 6, 0.003),
        "smoke": ScaleInfo("all 9 configurations, Unit. Scal., tiny data, 1 epoch, 2 seeds", 60, 0.3),
        "cpu": ScaleInfo("all 9 configurations at their cpu scales", 120, 25.0),
        "paper": ScaleInfo("all 9 configurations at 000's scale (Unit. Scal. only)", 120, 1500.0, 400.0),
    }
    sweeps = tuple(
        StudySweep(
            spec,
            label,
            overlays=_overlays(label),
            stand_in=stand_in,
            scales=("test", "smoke", "cpu", "paper") if label in TEST_CONFIGURATIONS else ("smoke", "cpu", "paper"),
        )
        for label, (spec, stand_in, _) in CONFIGURATIONS.items()
    )

    def cells(self) -> list[Cell]:
        cells = []
        for label, (_, _, value) in CONFIGURATIONS.items():
            published = (
                no_number("000 Fig. 3a / Fig. 7")
                if value is None
                else Published(
                    value,
                    "000 Appendix A.2.1 text",
                    "higher",
                    "approximate ('≈'), mean over training",
                    "cosine",
                    note="a similarity, not a score: higher is not better",
                )
            )
            cells.append(Cell(f"{label}/cos_to_mean", f"{label}: mean cos(g_i, mean g)", published, "higher", ""))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "easy_above_hard",
                "MNIST CL_CR, RL_RR and City R50, R18 are more similar than City InstSeg, HR, 19C",
                "000 Appendix A.2.1, Fig. 7",
                "qualitative",
            ),
            Claim(
                "qm9_lowest",
                "QM9 has the lowest mean cosine of all configurations",
                "000 Appendix A.2.1",
                "qualitative",
            ),
            Claim(
                "r50_above_mnist",
                "City R50 is more similar than Multi-MNIST CL_RR",
                "000 Fig. 3a caption",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:  # the cells are the diagnostics, not Delta_m
        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        values = self.run_measure(context, outcome, "unit_scal", "cos_to_mean", mean_cos_to_mean)
        self.extra(outcome, values, context)
        return outcome

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        values = dict(reports)

        def mean_of(labels: tuple[str, ...]) -> float | None:
            found = [values[label] for label in labels if label in values]
            return sum(found) / len(found) if found else None

        easy, hard = mean_of(EASY), mean_of(HARD)
        checks = {
            "easy_above_hard": qualitative(
                None if easy is None or hard is None else easy > hard,
                f"mean of {len([x for x in EASY if x in values])} easy: {easy}, of "
                f"{len([x for x in HARD if x in values])} hard: {hard}",
            ),
            "qm9_lowest": qualitative(
                None if "QM9" not in values or len(values) < 2 else values["QM9"] == min(values.values()),
                f"QM9: {values.get('QM9')}, lowest: {min(values, key=values.get) if values else None}",
            ),
            "r50_above_mnist": qualitative(
                None
                if "City R50" not in values or "MNIST CL_RR" not in values
                else values["City R50"] > values["MNIST CL_RR"],
                f"City R50: {values.get('City R50')}, MNIST CL_RR: {values.get('MNIST CL_RR')}",
            ),
        }
        for claim in self.claims():
            outcome.claims.append(ClaimResult(claim, checks[claim.key].verdict, checks[claim.key].detail))
