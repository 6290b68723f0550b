"""``000-ladder``: Gama & Grassi (000), section 3.3 and Fig. 3b -- the Cityscapes complexity ladder.

Unit. Scal. against IMTL on five steps of growing complexity (000 section 3.3): R50 (ResNet-50,
256x128, S7+D), R18 (ResNet-18), InstSeg (+ instance segmentation), HR (512x256), 19C (19 classes);
the built-in sweeps ``city_r50`` ... ``city_19c``, on generated street scenes (``scenes_*``) where
Cityscapes is not prepared. Fig. 3b prints no numbers. Claims (000 section 3.3): "the benefit of
employing a SMTO only becomes apparent upon the inclusion of the instance segmentation task" (IMTL does
not beat Unit. Scal. on R50 and R18, and does from InstSeg on), and "a substantial relative performance
gain is observed after incorporating all 19 classes" (IMTL beats Unit. Scal. on 19C).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import Published, ScaleInfo, no_number
from mtlbench.studies.sweep_study import MethodClaim, StudySweep, SweepStudy, test_scale_overlay

STEPS = ("r50", "r18", "instseg", "hr", "19c")
LABELS = {"r50": "R50", "r18": "R18", "instseg": "InstSeg", "hr": "HR", "19c": "19C"}


@register_study
class Ladder000(SweepStudy):
    name = "000-ladder"
    paper = "000"
    title = "The Cityscapes complexity ladder: when does IMTL beat Unit. Scal.?"
    targets = "Fig. 3b (section 3.3)"
    problems = ("cityscapes", "synthetic_scenes")
    description = "city_r50 -> r18 -> instseg -> hr -> 19c: Unit. Scal. vs IMTL, Δm per step."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("R50 step only, generated scenes, Unit. Scal. and IMTL, 1 seed, 1 epoch", 4, 0.002),
        "smoke": ScaleInfo("five steps, tiny scenes/images, 1 epoch, 2 seeds", 30, 0.2),
        "cpu": ScaleInfo("five steps, 200-300 images at half resolution, 5-10 epochs, 2x2 grid, 3 seeds", 120, 20.0),
        "paper": ScaleInfo("000's protocol on Cityscapes (150 epochs, 4x3 grid, 3 seeds)", 180, 900.0, 300.0),
    }
    sweeps = tuple(
        StudySweep(
            f"city_{step}",
            LABELS[step],
            overlays={"test": test_scale_overlay(["unit_scal", "imtl"])} if step == "r50" else {},
            stand_in=stand_ins.cityscapes(step),
            scales=("test", "smoke", "cpu", "paper") if step == "r50" else ("smoke", "cpu", "paper"),
        )
        for step in STEPS
    )
    published: ClassVar[Mapping[tuple[str, str], Published]] = {
        (LABELS[step], method): no_number("000 Fig. 3b") for step in STEPS for method in ("unit_scal", "imtl")
    }
    method_claims = (
        *(
            MethodClaim(
                f"no_benefit_{step}",
                f"On {LABELS[step]} IMTL does not beat Unit. Scal. (margin 1 Δm point)",
                "000 section 3.3, Fig. 3b",
                LABELS[step],
                ("imtl",),
                kind="not_beaten",
                margin=1.0,
            )
            for step in ("r50", "r18")
        ),
        *(
            MethodClaim(
                f"benefit_{step}",
                f"On {LABELS[step]} IMTL beats Unit. Scal.",
                "000 section 3.3, Fig. 3b",
                LABELS[step],
                ("imtl",),
                kind="beats",
                effect=1.0,
            )
            for step in ("instseg", "hr", "19c")
        ),
    )
