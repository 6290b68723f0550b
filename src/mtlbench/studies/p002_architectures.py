"""``002-architectures``: Guo et al. (002), Fig. 4 and section V-C -- MTL architectures against their base models.

Fig. 4 compares MTAN, MTI-Net and InvPT with their base models ResNet-18, HRNet-18 and ViT-T/16 (vanilla
MTL: a shared encoder and one head per task) on NYUD-v2 and PASCAL-Context, each task relative to the
vanilla single-task network (M_i), and -- for MTI-Net and InvPT -- single-task networks with the
architectures' modules. **MTI-Net and InvPT are not available in mtlbench (a later issue)**, nor MTAN on
these datasets (mtlbench's MTAN is SegNet-MTAN for NYUv2): their cells list 002's printed numbers
without ours. What runs is the baselines the figure compares against: vanilla MTL with uniform weights
and its single-task references for each base encoder mtlbench has (``encoder`` option of ``nyud``/
``pascal_context``: ``resnet18``, ``hrnet_w18_small_v2`` -- what MTI-Net's code, which 002 follows,
calls hrnet_w18 --, ``vit_t16``), on the stand-ins below the paper scale.
An encoder that this installation lacks is reported as not run.

Printed numbers (text of section V-C and Table II's MTAN rows; Delta_m in percent, higher is better, our
sign): MTAN Uniform +0.69 (NYUD) / -1.67 (PASCAL); MTI-Net Uniform +3.66 / -1.75 and MTI-Net Single-task
+3.45 / +1.71; InvPT Uniform relative to InvPT Single-task -3.74 / -6.05; vanilla MTL relative to STL
-6.77 / -8.37 (the text does not name the base model of these two; they sit next to InvPT, i.e.
presumably ViT-T/16 -- compared here with our ViT-T vanilla Delta_m).
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
    cell_value,
    no_number,
)
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, test_scale_overlay
from mtlbench.studies.sweeps import final_values

#: base encoder -> (label, resolution of the NYUD / PASCAL stand-ins (unused: the specs' scales set them))
BASES = {
    "resnet18": ("ResNet-18", "64x48", "64x64"),
    "hrnet_w18_small_v2": ("HRNet-18 (MTI-Net's hrnet_w18 = W18-Small-v2)", "64x64", "64x64"),
    "vit_t16": ("ViT-T/16", "64x48", "64x64"),
}
DATASETS = {"NYUD": ("nyud_002", "nyud"), "PASCAL": ("pascal_002", "pascal_context")}
SOURCE_TEXT = "002 section V-C (text on Fig. 4)"
SOURCE_TABLE = "002 Table II (MTAN rows)"
#: (cell key, label, value, source, note) of the printed numbers whose architecture mtlbench lacks
PRINTED: tuple[tuple[str, str, float, str, str], ...] = (
    ("NYUD/mtan/uniform", "NYUD: MTAN Uniform Δm vs vanilla STL", 0.69, SOURCE_TABLE, ""),
    ("PASCAL/mtan/uniform", "PASCAL: MTAN Uniform Δm vs vanilla STL", -1.67, SOURCE_TABLE, ""),
    ("NYUD/mtan/single_task", "NYUD: MTAN Single-task Δm vs vanilla STL", 0.82, SOURCE_TABLE, ""),
    ("PASCAL/mtan/single_task", "PASCAL: MTAN Single-task Δm vs vanilla STL", 0.45, SOURCE_TABLE, ""),
    ("NYUD/mtan/grid_search", "NYUD: MTAN Grid Search Δm vs vanilla STL", 1.29, SOURCE_TABLE, ""),
    ("PASCAL/mtan/grid_search", "PASCAL: MTAN Grid Search Δm vs vanilla STL", -1.22, SOURCE_TABLE, ""),
    ("NYUD/mtinet/uniform", "NYUD: MTI-Net Uniform Δm", 3.66, SOURCE_TEXT, ""),
    ("PASCAL/mtinet/uniform", "PASCAL: MTI-Net Uniform Δm", -1.75, SOURCE_TEXT, ""),
    ("NYUD/mtinet/single_task", "NYUD: MTI-Net Single-task Δm", 3.45, SOURCE_TEXT, ""),
    ("PASCAL/mtinet/single_task", "PASCAL: MTI-Net Single-task Δm", 1.71, SOURCE_TEXT, ""),
    ("NYUD/invpt/uniform_vs_stl", "NYUD: InvPT Uniform vs InvPT Single-task", -3.74, SOURCE_TEXT, ""),
    ("PASCAL/invpt/uniform_vs_stl", "PASCAL: InvPT Uniform vs InvPT Single-task", -6.05, SOURCE_TEXT, ""),
)
#: vanilla MTL vs STL printed next to InvPT (presumably ViT-T/16): compared with our vit_t16 sweep
VANILLA = {"NYUD": -6.77, "PASCAL": -8.37}
NOT_AVAILABLE = {"mtan": "MTAN on NYUD/PASCAL", "mtinet": "MTI-Net (a later issue)", "invpt": "InvPT (a later issue)"}


def available_encoders() -> tuple[str, ...]:
    """The encoders this installation's ``nyud``/``pascal_context`` accept."""
    from mtlbench.problems import PROBLEMS

    for option in PROBLEMS["nyud"].options:
        if option.name == "encoder":
            return tuple(option.choices or ("resnet18",))
    return ("resnet18",)


#: base encoder -> (spec suffix: 002's Table IX setup of that backbone family, paper-scale problem options)
SETUPS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet18": ("", {"encoder_weights": "timm:resnet18"}),
    "hrnet_w18_small_v2": ("_hrnet", {}),
    "vit_t16": (
        "_vit",
        {
            "encoder": "vit_t16",
            "encoder_weights": "timm:vit_tiny_patch16_384.augreg_in21k_ft_in1k",
            "normalization": "inception",
        },
    ),
}


def _sweep(dataset: str, encoder: str) -> StudySweep:
    """Vanilla uniform MTL on ``encoder``: the built-in spec of its family (``nyud_002``, ``nyud_002_hrnet``,
    ``nyud_002_vit`` and PASCAL's; their smoke/cpu scales shrink the encoder on the stand-ins), ImageNet weights
    at the paper scale."""
    spec, problem = DATASETS[dataset]
    suffix, paper = SETUPS[encoder]
    options = {"encoder": encoder}
    base: dict[str, Any] = {"methods": ["unit_scal"], "problem_options": options}
    return StudySweep(
        spec + suffix,
        f"{dataset}-{encoder}",
        overlays={
            "test": test_scale_overlay(["unit_scal"], problem_options=options),
            "smoke": base,
            "cpu": base,
            "paper": {"methods": ["unit_scal"], "problem_options": paper},
        },
        stand_in=stand_ins.dense_002(problem),
        scales=("test", "smoke", "cpu", "paper")
        if (dataset, encoder) == ("NYUD", "resnet18")
        else ("smoke", "cpu", "paper"),
    )


@register_study
class Architectures002(SweepStudy):
    name = "002-architectures"
    paper = "002"
    title = "MTL architectures (MTAN, MTI-Net, InvPT) and their base models; the vanilla baselines run"
    targets = "Fig. 4"
    problems = ("nyud", "pascal_context", "synthetic_scenes")
    description = "Vanilla uniform MTL vs STL per base encoder (ResNet-18, HRNet-18, ViT-T); MTAN/MTI-Net/InvPT listed."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, ResNet-18 vanilla uniform vs STL, tiny", 5, 0.002),
        "smoke": ScaleInfo("NYUD and PASCAL stand-ins, 3 base encoders (shrunk), uniform vs STL", 33, 0.4),
        "cpu": ScaleInfo("NYUD and PASCAL stand-ins at 64 px, 3 base encoders (shrunk)", 33, 1.5),
        "paper": ScaleInfo("002's protocols per backbone (Table IX), 3 base encoders", 33, 300.0, 80.0),
    }
    sweeps = tuple(_sweep(d, e) for d in DATASETS for e in BASES)

    def cells(self) -> list[Cell]:
        cells = []
        for key, label, value, source, _ in PRINTED:
            kind = key.split("/")[1]
            published = Published(
                value, source, "higher", "Δm (002 eq. 5), one run", "%", note=f"{NOT_AVAILABLE[kind]}: not in mtlbench"
            )
            cells.append(Cell(key, label, published, "higher", "%"))
        for dataset in DATASETS:
            for encoder, (name, _, _) in BASES.items():
                key = f"{dataset}-{encoder}/unit_scal/delta_m"
                if encoder == "vit_t16":
                    published = Published(
                        VANILLA[dataset],
                        SOURCE_TEXT,
                        "higher",
                        "vanilla MTL relative to STL",
                        "%",
                        note="the text does not name the base model: presumably ViT-T/16 (next to InvPT)",
                    )
                else:
                    published = no_number(
                        "002 Fig. 4", f"drawn in a figure (radar chart): no number printed for {name}"
                    )
                cells.append(Cell(key, f"{dataset}: {name} vanilla Uniform Δm vs its STL", published, "higher", "%"))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "vit_severer",
                "Fully sharing a ViT encoder leads to severer imbalance than the CNN bases (ResNet-18, HRNet-18)",
                "002 section V-C",
                "qualitative",
            ),
            Claim(
                "architectures_help",
                "MTL architectures (MTAN, MTI-Net, InvPT) improve over vanilla uniform MTL but not over their STL",
                "002 section V-C, Fig. 4",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        have = set(available_encoders())
        self.sweeps = tuple(s for s in type(self).sweeps if s.label.split("-", 1)[1] in have)  # type: ignore[misc]
        missing = [BASES[e][0] for e in BASES if e not in have]
        outcome = super().execute(context)
        outcome.notes.append(
            "MTI-Net and InvPT are not available in mtlbench (a later issue); MTAN runs only as SegNet-MTAN on NYUv2: "
            "their printed numbers are listed without ours."
        )
        if missing:
            outcome.notes.append(f"Encoders missing from this installation, not run: {', '.join(missing)}.")
        outcome.notes = list(dict.fromkeys(outcome.notes))  # one note per stand-in, not per sweep
        return outcome

    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        self._deltas: dict[str, float] = {}
        for label, report in reports.items():
            key = f"{label}/unit_scal/delta_m"
            mean, ci, n = cell_value(list(final_values(report, "unit_scal").values()))
            if mean is not None:
                self._deltas[label] = mean
            outcome.cells.append(CellResult(by_key[key], mean, ci, n, "" if n else "no completed final run"))
        shown = {r.cell.key for r in outcome.cells}
        for key, cell in by_key.items():
            if key not in shown:
                note = (
                    "not in mtlbench"
                    if "not in mtlbench" in cell.published.note
                    else f"not run at {outcome.scale} scale"
                )
                outcome.cells.append(CellResult(cell, None, None, 0, note))

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        results, parts = [], []
        for dataset in DATASETS:
            vit = self._deltas.get(f"{dataset}-vit_t16")
            cnn = {e: self._deltas.get(f"{dataset}-{e}") for e in ("resnet18", "hrnet_w18_small_v2")}
            if vit is None or any(v is None for v in cnn.values()):
                continue
            results.append(all(vit < v for v in cnn.values() if v is not None))
            parts.append(
                f"{dataset}: ViT-T {vit:+.2f} vs " + ", ".join(f"{e} {v:+.2f}" for e, v in cnn.items() if v is not None)
            )
        check = verdicts.qualitative(
            all(results) if results else None, "; ".join(parts) or "the three bases did not all run"
        )
        outcome.claims.append(ClaimResult(declared["vit_severer"], check.verdict, check.detail))
        outcome.claims.append(
            ClaimResult(
                declared["architectures_help"],
                verdicts.INCONCLUSIVE,
                "MTAN (on these datasets), MTI-Net and InvPT are not available in mtlbench",
            )
        )
