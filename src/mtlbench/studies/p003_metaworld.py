"""``003-metaworld``: Kurin et al. (003), Fig. 4 -- Metaworld MT10 and MT50 (listed; needs the Metaworld problem).

003 section 4.2 trains a shared Soft Actor-Critic policy on Metaworld MT10 and MT50 with 003's seven methods
(IMTL's runs crashed; appendix E) and reports the best average success rate over the updates (mean and 95% CI)
and the training time of 10,000 updates. mtlbench has no Metaworld problem yet (a later issue), so this
study only declares its cells and claims: at the ``test`` and ``smoke`` scales its outcome is a documented
no-op (every cell "not available: needs the Metaworld problem", every claim inconclusive, and one computed
cell saying whether the problem is registered); at the ``cpu`` and ``paper`` scales it stops with a one-line
error saying so.

Published (003's text only): on MT50 "a single unitary scalarization run takes roughly 15 hours, whereas
PCGrad, MGDA and GradDrop require more than a week".
"""

from __future__ import annotations

from typing import ClassVar

from mtlbench.errors import MissingDataError
from mtlbench.studies import register_study
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    Published,
    ScaleInfo,
    Study,
    StudyContext,
    StudyOutcome,
    no_number,
)
from mtlbench.studies.p003_common import SEVEN

PROBLEM = "metaworld"
SOURCE = "003 §4.2"
NOT_AVAILABLE = "not available: needs the Metaworld problem"
#: the scales whose outcome is the documented no-op (the automated test and smoke targets run them)
NO_OP_SCALES = ("test", "smoke")


def problem_registered() -> bool:
    """Whether mtlbench has a problem named ``metaworld``."""
    from mtlbench.problems import PROBLEMS

    return PROBLEM in PROBLEMS.names()


@register_study
class Metaworld003(Study):
    name = "003-metaworld"
    paper = "003"
    title = "No SMTO beats Unit. Scal. on Metaworld MT10/MT50; training time (needs the Metaworld problem)"
    targets = "Fig. 4, §4.2"
    problems = (PROBLEM,)
    description = "listed only: needs the Metaworld problem (a later issue); test and smoke scales are a no-op."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("no-op: lists the cells (needs the Metaworld problem)", 0, 0.0),
        "smoke": ScaleInfo("no-op: lists the cells (needs the Metaworld problem)", 0, 0.0),
        "cpu": ScaleInfo("not available: needs the Metaworld problem", 0, 0.0),
        "paper": ScaleInfo(
            "003's protocol: MT10 and MT50, SAC, 10 seeds (MT50: >1 week a run for PCGrad)", 140, 0.0, 20000.0
        ),
    }

    def cells(self) -> list[Cell]:
        out = [
            Cell(
                "problem_registered",
                "mtlbench has the Metaworld problem (1 = yes)",
                no_number(SOURCE, note="no number: a fact about this installation, not a result"),
            )
        ]
        for benchmark, figure in (("MT10", "003 Fig. 4(a)"), ("MT50", "003 Fig. 4(b)")):
            for method in SEVEN:
                out.append(
                    Cell(
                        f"{benchmark}/{method}/success",
                        f"{benchmark}: {method} best average success rate",
                        no_number(figure),
                    )
                )
        out.append(
            Cell(
                "MT50/unit_scal/run_hours",
                "MT50: Unit. Scal. hours per run",
                Published(15.0, f"{SOURCE} ('roughly 15 hours')", "lower", "one run", "h"),
                "lower",
                "h",
            )
        )
        for method in ("pcgrad", "mgda_ub", "graddrop"):
            out.append(
                Cell(
                    f"MT50/{method}/run_hours",
                    f"MT50: {method} hours per run",
                    Published(None, f"{SOURCE} ('more than a week')", "lower", "one run", "h", text="> 168"),
                    "lower",
                    "h",
                )
            )
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "not_beaten_mt10",
                "No SMTO significantly outperforms Unit. Scal. on MT10",
                "003 Fig. 4(a)",
                "no_difference",
                "margin 5 success-rate points (non-superiority)",
            ),
            Claim(
                "not_beaten_mt50",
                "No SMTO significantly outperforms Unit. Scal. on MT50",
                "003 Fig. 4(b)",
                "no_difference",
                "margin 5 success-rate points (non-superiority)",
            ),
            Claim(
                "unit_scal_cheapest", "Unit. Scal. is the least expensive method", "003 Fig. 4(c)-(d)", "qualitative"
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        self.check_scale(context.scale)
        if context.scale not in NO_OP_SCALES:
            raise MissingDataError(
                f"{self.name} needs the Metaworld problem, which mtlbench does not have yet; "
                f"its {', '.join(NO_OP_SCALES)} scales only list the cells"
            )
        outcome = self.outcome(context.scale)
        outcome.notes.append(f"{NOT_AVAILABLE} (a later issue): nothing was trained; every claim is inconclusive")
        registered = problem_registered()
        for cell in self.cells():
            if cell.key == "problem_registered":
                outcome.cells.append(CellResult(cell, 1.0 if registered else 0.0, None, 1))
            else:
                outcome.cells.append(CellResult(cell, None, None, 0, NOT_AVAILABLE))
        for claim in self.claims():
            outcome.claims.append(ClaimResult(claim, "inconclusive", NOT_AVAILABLE))
        return outcome
