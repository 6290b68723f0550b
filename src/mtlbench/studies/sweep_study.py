"""The common kind of study: one or more built-in sweeps, a Delta_m table per method, claims against Unit. Scal.

A :class:`SweepStudy` names its sweeps (built-in spec + per-scale overlay, :mod:`.sweeps`), which methods
run at each scale, the published Delta_m of each method (and of each task, where the paper prints it),
and its claims as :class:`MethodClaim`\\ s: "method X beats Unit. Scal." (a difference, paired over the
final seeds, Holm across the claim's methods) or "no method beats Unit. Scal." (non-superiority with a
stated margin in Delta_m points). Subclasses add figures or extra cells by overriding :meth:`extra`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    Published,
    Study,
    StudyContext,
    StudyOutcome,
    cell_value,
)
from mtlbench.studies.sweeps import final_values, run_sweep, study_spec

BASELINE = "unit_scal"
#: method-claim kinds checked with an equivalence test
NO_DIFFERENCE = ("not_beaten", "equivalent")


@dataclass(frozen=True)
class StandIn:
    """A generated stand-in: ``available()`` tells whether the real data is cached; else the sweep runs
    ``replacement`` (another built-in spec, or an overlay of the spec) and the output carries ``note``;
    ``test_overlay`` sizes the stand-in for the ``test`` scale."""

    available: Callable[[], bool]
    replacement: str | Mapping[str, Any]
    note: str
    test_overlay: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySweep:
    """One sweep of a study: a built-in spec, a label, and overlays per study scale."""

    spec: str
    label: str = ""
    overlays: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the problem's stand-in at test/smoke/cpu scale when the real data is absent (the study's overlays
    #: still apply on top)
    stand_in: StandIn | None = None
    #: the study scales that run this sweep (default: every scale)
    scales: tuple[str, ...] = ("test", "smoke", "cpu", "paper")


@dataclass(frozen=True)
class MethodClaim:
    """A claim about methods against Unit. Scal. on one sweep's test Delta_m.

    ``kind`` 'beats': each of ``methods`` has a higher Delta_m than Unit. Scal. (``require`` all/any/majority);
    'not_beaten': no method of ``methods`` beats Unit. Scal. by more than ``margin`` Delta_m points;
    'equivalent': every method is within ``margin`` Delta_m points of Unit. Scal. (TOST);
    'worse': each method is below Unit. Scal. ``effect`` is the paper's difference (or a stated minimal
    effect) in Delta_m points, for the power of a non-significant test.
    """

    key: str
    text: str
    source: str
    sweep: str
    methods: tuple[str, ...]
    kind: str = "beats"
    require: str = "all"
    effect: float | None = None
    margin: float = 1.0


def test_scale_overlay(methods: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The ``test`` scale: a method pair, one seed, one configuration, one epoch (plus ``extra`` keys)."""
    overlay: dict[str, Any] = {
        "methods": list(methods),
        "search_seeds": 1,
        "final_seeds": 1,
        "settings": {"epochs": 1},
        "references": {"search_seeds": 1, "final_seeds": 1},
    }
    from mtlbench.sweeps.spec import deep_merge

    return deep_merge(overlay, extra)


class SweepStudy(Study):
    """A study made of sweeps; see the module docstring."""

    sweeps: ClassVar[tuple[StudySweep, ...]] = ()
    #: (sweep label, method) -> the published test Delta_m (our convention: higher is better)
    published: ClassVar[Mapping[tuple[str, str], Published]] = {}
    method_claims: ClassVar[tuple[MethodClaim, ...]] = ()

    def _sweep_label(self, sweep: StudySweep) -> str:
        return sweep.label or sweep.spec

    def cells(self) -> list[Cell]:
        out = []
        for (label, method), published in self.published.items():
            out.append(Cell(f"{label}/{method}/delta_m", f"{label}: {method} Δm", published, "higher", "%"))
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                c.key,
                c.text,
                c.source,
                "no_difference" if c.kind in NO_DIFFERENCE else "difference",
                f"margin {c.margin:g} Δm points"
                if c.kind in NO_DIFFERENCE
                else (f"effect {c.effect:g} Δm points" if c.effect else ""),
            )
            for c in self.method_claims
        ]

    def spec_for(self, sweep: StudySweep, scale: str) -> tuple[Any, list[str]]:
        """The sweep spec at ``scale`` (with the stand-in where the real data is absent) and notes."""
        notes: list[str] = []
        spec_name = sweep.spec
        overlay = dict(sweep.overlays.get(scale, {}))
        stand_in = sweep.stand_in
        if stand_in is not None and scale != "paper" and not stand_in.available():
            from mtlbench.sweeps.spec import deep_merge

            if isinstance(stand_in.replacement, str):
                spec_name = stand_in.replacement
            else:
                overlay = deep_merge(stand_in.replacement, overlay)
            if scale == "test":
                overlay = deep_merge(overlay, stand_in.test_overlay)
            notes.append(stand_in.note)
        spec = study_spec(spec_name, scale, overlay, name=f"{self.name}:{self._sweep_label(sweep)}")
        return spec, notes

    def execute(self, context: StudyContext) -> StudyOutcome:
        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        reports: dict[str, Any] = {}
        for sweep in self.sweeps:
            if context.scale not in sweep.scales:
                continue
            spec, notes = self.spec_for(sweep, context.scale)
            outcome.notes.extend(notes)
            context.note(f"sweep {spec.name}: {spec.problem} {spec.tasks}, {len(spec.methods)} method(s)")
            reports[self._sweep_label(sweep)] = run_sweep(context, spec)
        self._cells(outcome, reports)
        self._claims(outcome, reports)
        self.extra(outcome, reports, context)
        return outcome

    # ------------------------------------------------------------------------------ cells and claims
    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        by_key = {cell.key: cell for cell in self.cells()}
        for label, report in reports.items():
            for result in report.methods:
                key = f"{label}/{result.method}/delta_m"
                cell = by_key.get(key) or Cell(
                    key,
                    f"{label}: {result.method} Δm",
                    Published(None, "not in the paper", note="mtlbench extra"),
                    "higher",
                    "%",
                )
                mean, ci, n = cell_value(list(final_values(report, result.method).values()))
                outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else "no completed final run"))
        # published cells whose method did not run at this scale stay listed, without our value
        shown = {r.cell.key for r in outcome.cells}
        for key, cell in by_key.items():
            if key not in shown:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        declared = {c.key: c for c in self.claims()}
        for claim in self.method_claims:
            report = reports.get(claim.sweep)
            check = self.check_method_claim(claim, report)
            outcome.claims.append(ClaimResult(declared[claim.key], check.verdict, check.detail))

    def check_method_claim(self, claim: MethodClaim, report: Any) -> verdicts.Check:
        """The verdict of a :class:`MethodClaim` on a sweep report (paired over final seeds, Holm); the effect
        size of a method is the paper's difference to Unit. Scal. where both are published, else ``effect``."""
        effects = {}
        base_published = self.published.get((claim.sweep, BASELINE))
        for method in claim.methods:
            published = self.published.get((claim.sweep, method))
            if (
                published
                and base_published
                and published.converted is not None
                and base_published.converted is not None
            ):
                effects[method] = abs(published.converted - base_published.converted)
        if report is None:
            return verdicts.Check(verdicts.INCONCLUSIVE, f"sweep {claim.sweep} not run")
        base = final_values(report, BASELINE)
        ran = {r.method for r in report.methods}
        comparisons = {m: (final_values(report, m), base) for m in claim.methods if m in ran}
        missing = [m for m in claim.methods if m not in ran]
        if not comparisons:
            return verdicts.Check(verdicts.INCONCLUSIVE, "none of the claim's methods ran at this scale")
        if claim.kind in NO_DIFFERENCE:
            kind = "not_greater" if claim.kind == "not_beaten" else "equal"
            checks = verdicts.check_family(comparisons, claim="no_difference", margin=claim.margin, kind=kind)
        else:
            alternative = "greater" if claim.kind == "beats" else "less"
            checks = verdicts.check_family(
                comparisons, claim="difference", alternative=alternative, effect=claim.effect, effects=effects
            )
        combined = verdicts.combine(checks, require="all" if claim.kind in NO_DIFFERENCE else claim.require)  # type: ignore[arg-type]
        details = "; ".join(f"{m}: {c.verdict} ({c.detail})" for m, c in checks.items())
        if missing:
            details += f"; not run at this scale: {', '.join(missing)}"
            if combined.verdict == verdicts.HOLDS and claim.require == "all":
                return verdicts.Check(verdicts.INCONCLUSIVE, details)
        return verdicts.Check(combined.verdict, details)

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        """Subclasses add tables, figures or cells here."""

    def run_measure(
        self,
        context: StudyContext,
        outcome: StudyOutcome,
        method: str,
        suffix: str,
        measure: Callable[[list[dict[str, Any]]], float | None],
    ) -> dict[str, float]:
        """Run every sweep of the scale and fill the cell ``<label>/<suffix>`` of each with the mean over
        ``method``'s final runs of ``measure(epoch records)`` (e.g. a gradient diagnostic); returns
        ``{label: mean}`` of the sweeps that gave a value."""
        from mtlbench.studies.sweeps import final_epochs

        by_key = {cell.key: cell for cell in self.cells()}
        values: dict[str, float] = {}
        for sweep in self.sweeps:
            cell = by_key[f"{sweep.label}/{suffix}"]
            if context.scale not in sweep.scales:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {context.scale} scale"))
                continue
            spec, notes = self.spec_for(sweep, context.scale)
            outcome.notes.extend(notes)
            report = run_sweep(context, spec)
            runs = [measure(epochs) for epochs in final_epochs(context, report, method).values()]
            mean, ci, n = cell_value([v for v in runs if v is not None])
            outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else f"no {suffix} recorded"))
            if mean is not None:
                values[sweep.label] = mean
        return values


def published_delta(value: float, source: str, aggregation: str = "mean test Δm over the final seeds") -> Published:
    """A Delta_m printed by 000 (higher is better, percent: our convention)."""
    if not math.isfinite(value):
        raise ValueError(value)
    return Published(value, source, "higher", aggregation, "%")


__all__ = ["BASELINE", "MethodClaim", "StandIn", "StudySweep", "SweepStudy", "published_delta", "test_scale_overlay"]
