"""``003-regularization``: Kurin et al. (003), section 5.1 and 5.3, Figs. 5 and 6 -- SMTOs as regularisers.

The ablation of CelebA without explicit regularisation (built-in spec ``celeba_reg_003``: no dropout layers,
weight decay 0 for every optimiser) for 003's seven methods, against three regularised variants of Unit.
Scal. trained as overlays of the same spec: "l2" (weight decay 1e-4), "l2+" (2e-3) and "Reg" (003's
Dropout2d layout and 1e-3); the plain one is the ablation's Unit. Scal. Where CelebA is not prepared, the
generated ``synthetic_attributes`` stands in.

Fig. 5 (mean validation accuracy over epochs): per run, the peak of the mean validation accuracy, the epoch
of the peak and the *overfitting drop* (peak minus the last epoch's value). Fig. 6 (‖sum_i g_i‖ on the
shared parameters, from the gradient diagnostics' ``batch.sum_norm``, per-epoch mean): the value in the last
epoch and the mean over the first 30% of the epochs (003: "the first 15 epochs" of 50). The figures print no
numbers: every cell is "no published number" and every claim is qualitative, on the means over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mtlbench.studies import register_study, stand_ins
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    ScaleInfo,
    StudyContext,
    StudyOutcome,
    cell_value,
    no_number,
)
from mtlbench.studies.p003_common import BASELINE, SEVEN, Accuracy003, mean_of
from mtlbench.studies.sweep_study import StudySweep, test_scale_overlay
from mtlbench.studies.sweeps import final_epochs

SPEC = "celeba_reg_003"
ABLATION = "ablation"
#: the regularised Unit. Scal. variants of 003 section 5.1: label -> overlay of the spec
VARIANTS: dict[str, dict[str, Any]] = {
    "l2": {"grid": {"weight_decay": [1e-4]}},
    "l2+": {"grid": {"weight_decay": [2e-3]}},
    "Reg": {"grid": {"weight_decay": [1e-3]}, "problem_options": {"dropout_layout": "kurin"}},
}
SMTOS = tuple(m for m in SEVEN if m != BASELINE)
#: the fraction of the epochs that counts as "early" (003: the first 15 of 50 epochs)
EARLY = 0.3
#: an overfitting drop below this (accuracy, fraction) is no overfitting: nothing to postpone
MIN_DROP = 0.002
#: runs shorter than this say nothing about overfitting or convergence: every claim is then inconclusive
MIN_EPOCHS = 4
FIG5 = "003 Fig. 5, §5.1"
FIG6 = "003 Fig. 6, §5.3"


def mean_val_accuracy(record: Mapping[str, Any], metric: str = "acc") -> float | None:
    """The mean over tasks of an epoch record's validation ``metric``."""
    values = [m[metric] for m in (record.get("val_metrics") or {}).values() if metric in m]
    return sum(values) / len(values) if values else None


def sum_norm(record: Mapping[str, Any]) -> float | None:
    """The epoch's mean ‖sum_i g_i‖ (gradient diagnostics ``batch.sum_norm``), None when not recorded."""
    stats = (((record.get("extra") or {}).get("grad") or {}).get("batch") or {}).get("sum_norm") or {}
    value = stats.get("mean")
    return float(value) if value is not None and math.isfinite(value) else None


def curve_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Peak mean validation accuracy, its epoch (1-based), the overfitting drop (peak - last), and
    ‖sum g_i‖ in the last epoch and averaged over the first :data:`EARLY` of the epochs."""
    out: dict[str, float] = {}
    accuracy = [mean_val_accuracy(r) for r in records]
    if accuracy and all(a is not None for a in accuracy):
        peak = max(range(len(accuracy)), key=lambda i: (accuracy[i], -i))  # ties: the earlier epoch
        out["peak_val_acc"] = float(accuracy[peak])
        out["peak_epoch"] = float(peak + 1)
        out["overfit_drop"] = float(accuracy[peak] - accuracy[-1])
    norms = [sum_norm(r) for r in records]
    if norms and norms[-1] is not None:
        out["sum_norm_last"] = norms[-1]
    early = [n for n in norms[: max(1, round(EARLY * len(norms)))] if n is not None]
    if early:
        out["sum_norm_early"] = sum(early) / len(early)
    return out


def _variant_overlay(label: str, scale: str) -> dict[str, Any]:
    from mtlbench.sweeps.spec import deep_merge

    overlay = deep_merge({"methods": [BASELINE]}, VARIANTS[label])
    if scale == "test":
        overlay = deep_merge(test_scale_overlay([BASELINE], settings={"epochs": 2}), overlay)
    return overlay


ROWS = (*SEVEN, *(f"unit_scal {label}" for label in VARIANTS))
CURVE_CELLS = {
    "peak_val_acc": ("peak mean validation accuracy", "higher"),
    "peak_epoch": ("epoch of the peak", "higher"),
    "overfit_drop": ("overfitting: peak - last validation accuracy", "lower"),
}
NORM_CELLS = {
    "sum_norm_last": ("‖sum g_i‖ in the last epoch", "lower"),
    "sum_norm_early": (f"‖sum g_i‖ over the first {EARLY:.0%} of the epochs", "lower"),
}


@register_study
class Regularization003(Accuracy003):
    name = "003-regularization"
    paper = "003"
    title = "SMTOs as regularisers: overfitting without dropout or l2, and ‖sum g_i‖ over training (CelebA)"
    targets = "Figs. 5 and 6, §5.1, §5.3"
    problems = ("celeba", "synthetic_attributes")
    description = (
        "celeba_reg_003: 003's seven methods unregularised and Unit. Scal. l2 / l2+ / Reg; validation accuracy "
        "over epochs and ‖sum g_i‖."
    )
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("generated attributes (2 tasks), Unit. Scal., MGDA-UB and l2, 1 seed, 2 epochs", 5, 0.003),
        "smoke": ScaleInfo(
            "generated attributes (10 tasks), 7 methods + 3 variants, 64 images, 2 epochs, 2 seeds", 40, 0.3
        ),
        "cpu": ScaleInfo(
            "generated attributes (T=40), 7 methods + 3 variants, 512 images, 8 epochs, 2 seeds", 100, 1.5
        ),
        "paper": ScaleInfo("003's protocol on CelebA: 50 epochs, 3 seeds (+40 x 2 references)", 110, 1800.0, 250.0),
    }
    label = ABLATION
    #: on the stand-in, smoke trains 10 of the 40 attributes (two groups): every step of a T = 40 run with
    #: gradient diagnostics costs T + 4 T extra backward passes (the 001 sample measures included)
    stand_in_overlays: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {
            "tasks": "_".join(f"A{j}" for j in range(10)),
            "problem_options": {"train_size": 64, "eval_size": 32, "width": 2},
            "settings": {"grad_metrics_every": 2},
        },
    }
    sweeps = (
        StudySweep(
            SPEC,
            ABLATION,
            overlays={"test": test_scale_overlay([BASELINE, "mgda_ub"], settings={"epochs": 2})},
            stand_in=stand_ins.celeba("none"),
        ),
        *(
            StudySweep(
                SPEC,
                label,
                overlays={scale: _variant_overlay(label, scale) for scale in ("test", "smoke", "cpu", "paper")},
                stand_in=stand_ins.celeba("kurin" if label == "Reg" else "none"),
                scales=("test", "smoke", "cpu", "paper") if label == "l2" else ("smoke", "cpu", "paper"),
            )
            for label in VARIANTS
        ),
    )

    def cells(self) -> list[Cell]:
        out = []
        for row in ROWS:
            for key, (text, direction) in CURVE_CELLS.items():
                out.append(Cell(f"{row}/{key}", f"{row}: {text}", no_number(FIG5), direction))
        for row in SEVEN:
            for key, (text, direction) in NORM_CELLS.items():
                out.append(Cell(f"{row}/{key}", f"{row}: {text}", no_number(FIG6), direction))
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "smtos_postpone_overfitting",
                "Unregularised, most SMTOs overfit less than Unit. Scal. (smaller drop from the validation peak)",
                FIG5,
                "qualitative",
            ),
            Claim("l2_postpones", "l2 and l2+ reduce Unit. Scal.'s overfitting", FIG5, "qualitative"),
            Claim("reg_further", "Unit. Scal. Reg overfits less than l2 and l2+", FIG5, "qualitative"),
            Claim(
                "smtos_smaller_early",
                "Early in training most SMTOs have a smaller ‖sum g_i‖ than Unit. Scal.",
                FIG6,
                "qualitative",
            ),
            Claim(
                "mgda_imtl_away",
                "Towards convergence MGDA-UB and IMTL have the largest ‖sum g_i‖ (above Unit. Scal.'s)",
                FIG6,
                "qualitative",
            ),
        ]

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        from mtlbench.analysis import claims as verdicts

        curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for label, report in reports.items():
            for result in report.methods:
                row = result.method if label == ABLATION else f"{result.method} {label}"
                curves[row] = final_epochs(context, report, result.method)
        summaries = {row: {seed: curve_summary(r) for seed, r in by_seed.items()} for row, by_seed in curves.items()}
        means: dict[str, dict[str, float | None]] = {}
        for cell in self.cells():
            row, key = cell.key.split("/")
            values = [s[key] for s in summaries.get(row, {}).values() if key in s]
            mean, ci, n = cell_value(values)
            means.setdefault(row, {})[key] = mean
            note = f"not run at {outcome.scale} scale" if row not in curves else "not recorded"
            outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else note))
        declared = {c.key: c for c in self.claims()}

        def add(key: str, check: Any) -> None:
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

        def value(row: str, key: str) -> float | None:
            return means.get(row, {}).get(key)

        epochs = min((len(r) for by_seed in curves.values() for r in by_seed.values()), default=0)
        if epochs < MIN_EPOCHS:
            for claim in self.claims():
                reason = (
                    f"{epochs} epoch(s) per run: too short to speak of overfitting or convergence (needs {MIN_EPOCHS})"
                )
                outcome.claims.append(ClaimResult(claim, verdicts.INCONCLUSIVE, reason))
        else:
            self._check(outcome, value, add)

        outcome.tables["Mean validation accuracy per epoch (Fig. 5)"] = _curve_table(curves, mean_val_accuracy)
        outcome.tables["‖sum g_i‖ per epoch (Fig. 6)"] = _curve_table(
            {r: c for r, c in curves.items() if r in SEVEN}, sum_norm
        )
        outcome.notes.append(
            f"Overfitting drop = peak - last epoch's mean validation accuracy; below {MIN_DROP}, or a peak in the "
            f"first epoch, counts as no overfitting (the Fig. 5 claims are then inconclusive); runs shorter than "
            f"{MIN_EPOCHS} epochs decide no claim. Qualitative checks on the means over seeds."
        )
        outcome.notes = list(dict.fromkeys(outcome.notes))

    def _check(self, outcome: StudyOutcome, value: Any, add: Any) -> None:
        """The claims of Figs. 5 and 6 on the means over seeds (``value(row, key)``)."""
        from mtlbench.analysis import claims as verdicts

        base_drop = value(BASELINE, "overfit_drop")
        drops = {m: value(m, "overfit_drop") for m in SMTOS if value(m, "overfit_drop") is not None}
        base_peak = value(BASELINE, "peak_epoch")
        if base_drop is not None and base_peak is not None and base_peak < 2:
            base_drop = 0.0  # the best epoch is the first: no learning to lose, no overfitting to postpone
        if base_drop is None or len(drops) < 2:
            add("smtos_postpone_overfitting", verdicts.Check(verdicts.INCONCLUSIVE, "too few methods ran"))
        elif base_drop < MIN_DROP:
            add(
                "smtos_postpone_overfitting",
                verdicts.Check(verdicts.INCONCLUSIVE, f"Unit. Scal. does not overfit here (drop {base_drop:.4f})"),
            )
        else:
            smaller = [m for m, d in drops.items() if d < base_drop]
            detail = f"Unit. Scal. drop {base_drop:.4f}; " + ", ".join(f"{m} {d:.4f}" for m, d in drops.items())
            add("smtos_postpone_overfitting", verdicts.qualitative(2 * len(smaller) > len(SMTOS), detail))
        variants = {v: value(f"unit_scal {v}", "overfit_drop") for v in ("l2", "l2+", "Reg")}
        if base_drop is None or variants["l2"] is None or variants["l2+"] is None:
            add("l2_postpones", verdicts.Check(verdicts.INCONCLUSIVE, "the l2 variants did not both run"))
        elif base_drop < MIN_DROP:
            add(
                "l2_postpones",
                verdicts.Check(verdicts.INCONCLUSIVE, f"Unit. Scal. does not overfit here ({base_drop:.4f})"),
            )
        else:
            detail = f"drop: plain {base_drop:.4f}, l2 {variants['l2']:.4f}, l2+ {variants['l2+']:.4f}"
            add(
                "l2_postpones", verdicts.qualitative(variants["l2"] < base_drop and variants["l2+"] < base_drop, detail)
            )
        if any(v is None for v in variants.values()):
            add("reg_further", verdicts.Check(verdicts.INCONCLUSIVE, "l2, l2+ and Reg did not all run"))
        else:
            detail = ", ".join(f"{v} {d:.4f}" for v, d in variants.items())
            reg, l2, l2p = variants["Reg"], variants["l2"], variants["l2+"]
            add("reg_further", verdicts.qualitative(reg <= min(l2, l2p) + 1e-12, f"drop: {detail}"))  # type: ignore[type-var]
        base_early = value(BASELINE, "sum_norm_early")
        early = {m: value(m, "sum_norm_early") for m in SMTOS if value(m, "sum_norm_early") is not None}
        if base_early is None or len(early) < 2:
            add("smtos_smaller_early", verdicts.Check(verdicts.INCONCLUSIVE, "too few methods recorded ‖sum g_i‖"))
        else:
            smaller = [m for m, v in early.items() if v < base_early]
            detail = f"Unit. Scal. {base_early:.4g}; " + ", ".join(f"{m} {v:.4g}" for m, v in early.items())
            add("smtos_smaller_early", verdicts.qualitative(2 * len(smaller) > len(SMTOS), detail))
        last = {m: value(m, "sum_norm_last") for m in SEVEN if value(m, "sum_norm_last") is not None}
        if BASELINE not in last or not ({"mgda_ub", "imtl"} & set(last)):
            add("mgda_imtl_away", verdicts.Check(verdicts.INCONCLUSIVE, "Unit. Scal. and MGDA-UB/IMTL must record it"))
        else:
            ranked = sorted(last, key=lambda m: -last[m])  # type: ignore[operator]
            targets = [m for m in ("mgda_ub", "imtl") if m in last]
            detail = "last epoch: " + ", ".join(f"{m} {last[m]:.4g}" for m in ranked)
            holds = set(ranked[: len(targets)]) == set(targets) and all(
                last[m] > last[BASELINE]
                for m in targets  # type: ignore[operator]
            )
            check = verdicts.qualitative(holds, detail)
            if holds and len(last) < len(SEVEN):
                check = verdicts.Check(verdicts.INCONCLUSIVE, f"{detail}; {len(last)} of 7 methods ran")
            add("mgda_imtl_away", check)


def _curve_table(curves: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]], read: Any) -> str:
    """Markdown: a row per method/variant, a column per epoch, the mean over seeds of ``read(record)``."""
    epochs = max((len(r) for by_seed in curves.values() for r in by_seed.values()), default=0)
    rows = [
        "| run | " + " | ".join(str(e + 1) for e in range(epochs)) + " |",
        "|---|" + "---|" * epochs,
    ]
    for row, by_seed in curves.items():
        cells = []
        for e in range(epochs):
            values = {seed: read(r[e]) for seed, r in by_seed.items() if e < len(r) and read(r[e]) is not None}
            mean = mean_of(values)
            cells.append("-" if mean is None else f"{mean:.4g}")
        rows.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
