"""``000-similar-tasks``: Gama & Grassi (000), section 3.2 and Fig. 2 -- two similar tasks.

Multi-MNIST with two classification tasks (CL_CR) and two reconstruction tasks (RL_RR), the eight
shortlisted SMTOs against Unit. Scal. (built-in sweeps ``mnist_cl_cr`` and ``mnist_rl_rr``). Fig. 2 draws
the Delta_m box plots and the mean error of each method's normalised weights to equal weights; it prints
no number, and the text gives one: Unit. Scal.'s Delta_m on RL_RR is about -20 %.
Claims: every SMTO performs closely to Unit. Scal. (an equivalence test with a stated margin of 2 Delta_m
points: 000 gives none), and the weights stay near 1/2 (mean |w - 1/2| below 0.1) except FAMO's on CL_CR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from mtlbench.analysis.claims import qualitative
from mtlbench.studies import register_study
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
    no_number,
)
from mtlbench.studies.sweep_study import MethodClaim, StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_epochs

SMTOS = ("auto_lambda", "cagrad", "cdtt", "edm", "famo", "imtl", "nash_mtl", "rotograd")
METHODS = ("unit_scal", *SMTOS)
#: the stated equivalence margin (000 states none)
MARGIN = 2.0
WEIGHT_TOLERANCE = 0.1


def weight_error(epochs: list[dict[str, Any]]) -> float | None:
    """000 Fig. 2 (right): the mean over epochs and tasks of |w_i / sum_j w_j - 1/T| of one run."""
    rows = [e.get("weights") for e in epochs]
    if not rows or any(not row for row in rows):
        return None
    errors = []
    for row in rows:
        values = list(row.values())
        total = sum(values)
        if not total > 0 or not all(math.isfinite(v) for v in values):
            return None
        errors.extend(abs(v / total - 1 / len(values)) for v in values)
    return sum(errors) / len(errors)


@register_study
class SimilarTasks000(SweepStudy):
    name = "000-similar-tasks"
    paper = "000"
    title = "Two similar tasks: the SMTOs perform like Unit. Scal. and their weights stay near equal"
    targets = "Fig. 2 (section 3.2)"
    problems = ("multi_mnist",)
    description = "mnist_cl_cr and mnist_rl_rr: Δm of the 8 shortlisted SMTOs and their weights' error to 1/2."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("CL_CR only: Unit. Scal. and CAGrad, 1 seed, 1 epoch", 4, 0.001),
        "smoke": ScaleInfo("both pairs, 9 methods, 512 images, 1 epoch, 2 seeds", 44, 0.15),
        "cpu": ScaleInfo("both pairs, 10,000 images, 10 epochs, small grids, 2+3 seeds", 500, 10.0),
        "paper": ScaleInfo("000's protocol on both pairs", 4000, 400.0, 80.0),
    }
    sweeps = (
        StudySweep(
            "mnist_cl_cr",
            "CL_CR",
            overlays={
                "test": test_scale_overlay(
                    ["unit_scal", "cagrad"], problem_options={"train_size": 200, "partners": "seeded"}
                )
            },
        ),
        StudySweep("mnist_rl_rr", "RL_RR", scales=("smoke", "cpu", "paper")),
    )
    published: ClassVar[Mapping[tuple[str, str], Published]] = {
        **{(pair, m): no_number("000 Fig. 2 (left)") for pair in ("CL_CR", "RL_RR") for m in METHODS},
        ("RL_RR", "unit_scal"): Published(
            -20.0,
            "000 section 3.2 text",
            "higher",
            "approximate ('≈ -20%')",
            "%",
            note="the text's only number for Fig. 2",
        ),
    }
    method_claims = tuple(
        MethodClaim(
            f"close_{pair.lower()}",
            f"On {pair} every SMTO performs closely to Unit. Scal. (within {MARGIN:g} Δm points)",
            "000 section 3.2, Fig. 2",
            pair,
            SMTOS,
            kind="equivalent",
            margin=MARGIN,
        )
        for pair in ("CL_CR", "RL_RR")
    )

    def cells(self) -> list[Cell]:
        cells = super().cells()
        for pair in ("CL_CR", "RL_RR"):
            for method in SMTOS:
                cells.append(
                    Cell(
                        f"{pair}/{method}/weight_error",
                        f"{pair}: {method} mean |w - 1/2|",
                        no_number("000 Fig. 2 (right)"),
                        "lower",
                        "",
                    )
                )
        return cells

    def claims(self) -> list[Claim]:
        return [
            *super().claims(),
            Claim(
                "weights_near_half",
                f"The SMTOs' normalised weights stay near 1/2 (mean |w - 1/2| < {WEIGHT_TOLERANCE:g}), "
                "except FAMO on CL_CR",
                "000 section 3.2, Fig. 2 (right)",
                "qualitative",
            ),
        ]

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        errors: dict[tuple[str, str], float] = {}
        for pair, report in reports.items():
            for method in SMTOS:
                values = [
                    e
                    for e in (weight_error(x) for x in final_epochs(context, report, method).values())
                    if e is not None
                ]
                key = f"{pair}/{method}/weight_error"
                mean, ci, n = cell_value(values)
                outcome.put(CellResult(by_key[key], mean, ci, n, "" if n else "not run at this scale"))
                if mean is not None:
                    errors[(pair, method)] = mean
        judged = {k: v for k, v in errors.items() if k != ("CL_CR", "famo")}
        if not judged:
            check = qualitative(None, "no SMTO run records varying weights at this scale")
        else:
            worst = max(judged, key=judged.get)
            check = qualitative(
                all(v < WEIGHT_TOLERANCE for v in judged.values()),
                f"largest mean |w - 1/2|: {judged[worst]:.3f} ({worst[1]} on {worst[0]}) "
                f"over {len(judged)} method/pair(s)",
            )
        claim = next(c for c in self.claims() if c.key == "weights_near_half")
        outcome.claims.append(ClaimResult(claim, check.verdict, check.detail))
