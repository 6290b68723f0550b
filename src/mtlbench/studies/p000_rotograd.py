"""``000-rotograd``: Gama & Grassi (000), Appendix A.3 and Fig. 9 -- RotoGrad's rotation loss per problem.

000 explains RotoGrad's failure on QM9 by its rotation loss L_rot being "orders of magnitude higher" than
on Multi-MNIST and Cityscapes (Fig. 9, which prints no numbers). RotoGrad is trained on Multi-MNIST
CL_RR, Cityscapes 19C (generated scenes where Cityscapes is not prepared) and QM9 (the generated 11-task
regression where QM9 is not cached) with its rotation loss recorded per epoch (``extra.rotation_loss``);
the cell is its mean over training. Claim: QM9's L_rot exceeds the others' by at least a factor 10.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from mtlbench.analysis.claims import qualitative
from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import (
    Cell,
    Claim,
    ClaimResult,
    ScaleInfo,
    StudyContext,
    StudyOutcome,
    no_number,
)
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay

FACTOR = 10.0


def mean_rotation_loss(epochs: list[dict[str, Any]]) -> float | None:
    values = [
        float(v) for e in epochs if (v := (e.get("extra") or {}).get("rotation_loss")) is not None and math.isfinite(v)
    ]
    return sum(values) / len(values) if values else None


def _sweep(spec: str, label: str, stand_in: Any, test: dict[str, Any] | None) -> StudySweep:
    overlays: dict[str, Any] = {scale: {"methods": ["rotograd"]} for scale in ("smoke", "cpu", "paper")}
    if test is not None:
        overlays["test"] = test_scale_overlay(["rotograd"], **test)
    return StudySweep(
        spec,
        label,
        overlays=overlays,
        stand_in=stand_in,
        scales=("test", "smoke", "cpu", "paper") if test is not None else ("smoke", "cpu", "paper"),
    )


@register_study
class Rotograd000(SweepStudy):
    name = "000-rotograd"
    paper = "000"
    title = "RotoGrad's rotation loss on Multi-MNIST, Cityscapes 19C and QM9"
    targets = "Fig. 9 (Appendix A.3)"
    problems = ("multi_mnist", "cityscapes", "synthetic_scenes", "qm9", "synthetic")
    description = "RotoGrad on three problems; mean rotation loss over training."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Multi-MNIST CL_RR and the QM9 stand-in, RotoGrad, 1 seed, 1 epoch", 16, 0.003),
        "smoke": ScaleInfo("three problems, tiny data, 1 epoch, 2 seeds", 30, 0.2),
        "cpu": ScaleInfo("three problems at their cpu scales", 40, 20.0),
        "paper": ScaleInfo("three problems at 000's scale (RotoGrad's selected configuration)", 40, 1200.0, 400.0),
    }
    sweeps = (
        _sweep("mnist_cl_rr", "MNIST CL_RR", None, {"problem_options": {"train_size": 200, "partners": "seeded"}}),
        _sweep("city_19c", "City 19C", stand_ins.cityscapes("19c"), None),
        _sweep("qm9", "QM9", stand_ins.qm9(), {}),
    )

    def cells(self) -> list[Cell]:
        return [
            Cell(
                f"{s.label}/rotation_loss",
                f"{s.label}: mean RotoGrad rotation loss",
                no_number("000 Fig. 9"),
                "lower",
                "",
            )
            for s in self.sweeps
        ]

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "qm9_orders_higher",
                f"QM9's rotation loss is at least {FACTOR:g}x that of Multi-MNIST and Cityscapes",
                "000 Appendix A.3, Fig. 9",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        values = self.run_measure(context, outcome, "rotograd", "rotation_loss", mean_rotation_loss)
        others = [v for k, v in values.items() if k != "QM9"]
        if "QM9" not in values or not others:
            check = qualitative(None, f"needs QM9 and another problem; have {sorted(values)}")
        else:
            ratio = values["QM9"] / max(others) if max(others) > 0 else math.inf
            check = qualitative(ratio >= FACTOR, f"QM9 / largest other = {ratio:.3g}")
        claim = self.claims()[0]
        outcome.claims.append(ClaimResult(claim, check.verdict, check.detail))
        return outcome
