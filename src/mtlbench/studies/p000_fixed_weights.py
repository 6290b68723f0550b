"""``000-fixed-weights``: Gama & Grassi (000), section 3.5, Table 2 and Figs. 5/6 -- fixed weights from an SMTO.

Per dataset, the SMTO whose weights 000 used (CAGrad on Multi-MNIST CL_RR, EDM on Cityscapes 19C, Nash-MTL
on QM9) is trained with Unit. Scal. (the built-in sweeps, stand-ins where the data is absent); its weights
are extracted as 000 does (:mod:`mtlbench.analysis.fixed_weights`: per-epoch mean weights normalised to sum
1, EMA with beta 0.9, the last value) from its first final seed, and ``fixed_weights`` is trained with the
source's hyperparameters on every final seed (000: "the same amount of times as their SMTO counterpart",
on its mean objective). 000 extracted QM9's weights at lr 1e-4 and trained them at the selected lr; this
study extracts from the selected setting (``mtlbench fixed-weights --extract-lr 1e-4 --train-lr best`` does
000's variant). Published: Table 2 (Unit. Scal., fixed weights, best SMTO; mean test Delta_m, percent,
higher is better). Claims: fixed weights beat Unit. Scal., and are comparable to the SMTO (within a stated
margin of 1.5 Delta_m points: 000 states none).
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
)
from mtlbench.studies.sweep_study import StudySweep, SweepStudy, published_delta, test_scale_overlay
from mtlbench.studies.sweeps import final_values

MARGIN = 1.5
#: label -> (spec, source SMTO, stand-in, test overlay or None)
DATASETS: dict[str, tuple[str, str, Any, dict[str, Any] | None]] = {
    "MNIST": ("mnist_cl_rr", "cagrad", None, {"problem_options": {"train_size": 200, "partners": "seeded"}}),
    "City 19C": ("city_19c", "edm", stand_ins.cityscapes("19c"), None),
    "QM9": ("qm9", "nash_mtl", stand_ins.qm9(), None),
}
#: 000 Table 2: dataset -> (Unit. Scal., fixed weights, best SMTO) mean test Delta_m (%)
TABLE_2 = {"MNIST": (-8.952, -3.251, -2.137), "City 19C": (-5.312, 0.145, 0.570), "QM9": (-135.7, -53.66, -53.62)}
COLUMNS = ("unit_scal", "fixed_weights", "best_smto")


def _sweep(label: str) -> StudySweep:
    spec, source, stand_in, test = DATASETS[label]
    overlays: dict[str, Any] = {scale: {"methods": ["unit_scal", source]} for scale in ("smoke", "cpu", "paper")}
    if test is not None:
        overlays["test"] = test_scale_overlay(["unit_scal", source], **test)
    scales = ("test", "smoke", "cpu", "paper") if test is not None else ("smoke", "cpu", "paper")
    return StudySweep(spec, label, overlays=overlays, stand_in=stand_in, scales=scales)


@register_study
class FixedWeights000(SweepStudy):
    name = "000-fixed-weights"
    paper = "000"
    title = "Fixed weights extracted from an SMTO against Unit. Scal. and the SMTO"
    targets = "Table 2, Figs. 5/6 (section 3.5)"
    problems = ("multi_mnist", "cityscapes", "synthetic_scenes", "qm9", "synthetic")
    description = (
        "CAGrad (MNIST), EDM (City 19C) and Nash-MTL (QM9) weights, EMA-extracted and trained as fixed weights."
    )
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("MNIST only: Unit. Scal., CAGrad and its fixed weights, 1 seed, 1 epoch", 5, 0.002),
        "smoke": ScaleInfo("three datasets, tiny data, 1 epoch, 2 seeds", 40, 0.3),
        "cpu": ScaleInfo("three datasets at their cpu scales", 150, 30.0),
        "paper": ScaleInfo("000's protocol (10 / 3 / 3 final seeds)", 400, 2000.0, 600.0),
    }
    sweeps = tuple(_sweep(label) for label in DATASETS)

    def cells(self) -> list[Cell]:
        names = {"unit_scal": "Unit. Scal.", "fixed_weights": "fixed weights", "best_smto": "the SMTO"}
        return [
            Cell(
                f"{label}/{column}",
                f"{label}: {names[column]} Δm",
                published_delta(value, "000 Table 2", "mean test Δm of the final seeds"),
                "higher",
                "%",
            )
            for label, row in TABLE_2.items()
            for column, value in zip(COLUMNS, row, strict=True)
        ]

    def claims(self) -> list[Claim]:
        return [
            Claim("fixed_beats_unit_scal", "Fixed weights beat Unit. Scal.", "000 Table 2", "difference"),
            Claim(
                "fixed_comparable",
                f"Fixed weights are comparable to the SMTO (within {MARGIN:g} Δm points)",
                "000 section 3.5, Table 2",
                "no_difference",
                f"margin {MARGIN:g} Δm points",
            ),
        ]

    published: ClassVar[Mapping[tuple[str, str], Published]] = {}

    def execute(self, context: StudyContext) -> StudyOutcome:
        from mtlbench.analysis.fixed_weights import fixed_weights_config, weights_from_run
        from mtlbench.store.results import ResultsStore
        from mtlbench.studies.sweeps import run_sweep
        from mtlbench.training import RunConfig, Trainer

        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        by_key = {cell.key: cell for cell in self.cells()}
        groups: dict[str, dict[str, dict[int, float]]] = {}
        rows = ["| dataset | source | source run | weights (sum 1) |", "|---|---|---|---|"]
        for sweep in self.sweeps:
            label = sweep.label
            _, source, _, _ = DATASETS[label]
            if context.scale not in sweep.scales:
                for column in COLUMNS:
                    key = f"{label}/{column}"
                    outcome.cells.append(CellResult(by_key[key], None, None, 0, f"not run at {context.scale} scale"))
                continue
            spec, notes = self.spec_for(sweep, context.scale)
            outcome.notes.extend(notes)
            report = run_sweep(context, spec)
            source_runs = next((m for m in report.methods if m.method == source), None)
            finals = [f for f in (source_runs.final if source_runs else []) if f.run and f.run.status == "completed"]
            fixed: dict[int, float] = {}
            if finals:
                store = ResultsStore(context.results)
                extracted = weights_from_run(store, finals[0].run.id)
                rows.append(
                    f"| {label} | {source} | {finals[0].run.id} | "
                    + ", ".join(f"{t}={w:.4f}" for t, w in zip(extracted.tasks, extracted.weights, strict=True))
                    + " |"
                )
                for final in finals:
                    fields = fixed_weights_config(extracted, final.seed, "auto", objective="mean")
                    config = RunConfig(**{**fields, "threads": context.threads or 1})
                    result = Trainer(config, store=store, checkpoint_root=context.results.parent / "checkpoints").run()
                    if result.status == "completed" and result.test_delta_m is not None:
                        fixed[final.seed] = float(result.test_delta_m)
            values = {
                "unit_scal": final_values(report, "unit_scal"),
                "fixed_weights": fixed,
                "best_smto": final_values(report, source),
            }
            groups[label] = values
            for column in COLUMNS:
                mean, ci, n = cell_value(list(values[column].values()))
                outcome.cells.append(
                    CellResult(
                        by_key[f"{label}/{column}"], mean, ci, n, f"SMTO: {source}" if column == "best_smto" else ""
                    )
                )
        outcome.tables["Extracted weights (000 section 3.5: EMA beta 0.9 of the epoch means)"] = "\n".join(rows)
        beats = verdicts.check_family(
            {label: (v["fixed_weights"], v["unit_scal"]) for label, v in groups.items()},
            claim="difference",
            effects={label: TABLE_2[label][1] - TABLE_2[label][0] for label in groups},
        )
        comparable = verdicts.check_family(
            {label: (v["fixed_weights"], v["best_smto"]) for label, v in groups.items()},
            claim="no_difference",
            margin=MARGIN,
            kind="equal",
        )
        for claim, checks in zip(self.claims(), (beats, comparable), strict=True):
            combined = verdicts.combine(checks)
            detail = "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items()) or "nothing run"
            outcome.claims.append(ClaimResult(claim, combined.verdict, detail))
        return outcome
