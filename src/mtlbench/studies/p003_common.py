"""What the studies of Kurin et al. (003) share: their methods, time per epoch, mean accuracy, claims.

003 compares methods by the *mean task test accuracy* (Multi-MNIST, CelebA) or by each metric on its own
(Cityscapes), never by Delta_m, and plots the training time per epoch of each method next to it (Figs.
1-3). Its figures print no numbers: the only published values are in its text (runtime factors, the
selected weight decay). This module turns stored sweep reports into those quantities:

* :func:`mean_test_accuracy` -- per final seed, the mean over tasks of the test metric (003's selection
  and report: "avg. task test accuracy");
* :func:`epoch_seconds` / :func:`time_ratios` -- per final seed, the mean training time of an epoch
  (the epoch record's ``train_seconds``, minus the time the gradient diagnostics took) and its ratio to
  Unit. Scal.'s mean (003 Figs. 1(b), 2(b), 3(b));
* :func:`not_beaten` -- 003's claim "no method outperforms Unit. Scal." as a non-superiority test with a
  stated margin, Holm-adjusted across the methods (:mod:`mtlbench.analysis.claims`).

The module name starts with ``p003`` but registers no study (the registry imports it harmlessly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    Published,
    StudyContext,
    StudyOutcome,
    cell_value,
    no_number,
)
from mtlbench.studies.sweep_study import SweepStudy

BASELINE = "unit_scal"
#: the seeds a runtime factor needs before its bootstrap CI can make a timing claim fail
MIN_TIMED = 3
TIMING_NOTE = (
    "Time per epoch: the final runs' training seconds per epoch (gradient diagnostics excluded), as ratios to "
    "Unit. Scal.'s mean; other processes on the machine and runs trained side by side (--workers > 1) blur them, "
    "so a timing claim fails only when a bootstrap CI over 3 or more seeds lies outside its range"
)
#: 003's seven optimisers (section 4: Unit. Scal., MGDA-UB, IMTL, PCGrad, GradDrop, RLW Diri., RLW Norm.)
SEVEN = ("unit_scal", "mgda_ub", "imtl", "pcgrad", "graddrop", "rlw_dirichlet", "rlw_normal")
#: 000's shortlist methods that mtlbench's CelebA spec adds to 003's seven
SHORTLIST_000 = ("cagrad", "nash_mtl", "famo", "edm", "cdtt")
SEVEN_LABELS = {
    "unit_scal": "Unit. Scal.",
    "mgda_ub": "MGDA-UB",
    "imtl": "IMTL",
    "pcgrad": "PCGrad",
    "graddrop": "GradDrop",
    "rlw_dirichlet": "RLW Diri.",
    "rlw_normal": "RLW Norm.",
}


def not_in_003(method: str) -> Published:
    """The cell of a method 003 did not run (000's shortlist): no published number."""
    return Published(None, "not in 003", note=f"no number: {method} is not among 003's methods (mtlbench extra)")


def ratio_published(value: float | None, source: str, text: str = "") -> Published:
    """A runtime factor against Unit. Scal. printed in 003's text (lower is better, 'x Unit. Scal.')."""
    if value is None:
        return Published(None, source, "lower", "training time per epoch / Unit. Scal.'s", "x", text=text)
    return Published(value, source, "lower", "training time per epoch / Unit. Scal.'s (003: 10 timing runs)", "x")


# ------------------------------------------------------------------------------------------ values
def final_runs(report: Any, method: str) -> list[Any]:
    """The completed final runs of ``method`` as :class:`~mtlbench.sweeps.runner.FinalRun`\\ s."""
    out = []
    for result in report.methods:
        if result.method == method:
            out += [f for f in result.final if f.run is not None and f.run.status == "completed"]
    return out


def mean_test_accuracy(report: Any, method: str, metric: str = "acc") -> dict[int, float]:
    """``{seed: mean over tasks of the test metric}`` of a method's completed final runs."""
    out: dict[int, float] = {}
    for final in final_runs(report, method):
        values = [m[metric] for m in final.test_metrics.values() if metric in m]
        if values and len(values) == len(final.test_metrics):
            out[final.seed] = float(sum(values) / len(values))
    return out


def epoch_seconds(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean training seconds of an epoch over ``records`` (``train_seconds`` minus the gradient diagnostics'
    ``extra.grad.seconds``; ``seconds`` for records written before ``train_seconds`` existed)."""
    values = []
    for record in records:
        seconds = record.get("train_seconds", record.get("seconds"))
        if seconds is None:
            continue
        grad = (record.get("extra") or {}).get("grad") or {}
        values.append(float(seconds) - float(grad.get("seconds", 0.0)))
    return sum(values) / len(values) if values else None


def method_seconds(context: Any, report: Any, method: str) -> dict[int, float]:
    """``{seed: mean training seconds per epoch}`` of a method's completed final runs."""
    from mtlbench.studies.sweeps import final_epochs

    out = {}
    for seed, records in final_epochs(context, report, method).items():
        seconds = epoch_seconds(records)
        if seconds is not None:
            out[seed] = seconds
    return out


def time_ratios(seconds: Mapping[str, Mapping[int, float]], baseline: str = BASELINE) -> dict[str, dict[int, float]]:
    """``{method: {seed: seconds / mean seconds of the baseline}}`` (empty without a baseline time)."""
    base = list(seconds.get(baseline, {}).values())
    if not base or not sum(base) > 0:
        return {}
    mean = sum(base) / len(base)
    return {method: {seed: value / mean for seed, value in by_seed.items()} for method, by_seed in seconds.items()}


def mean_of(values: Mapping[int, float]) -> float | None:
    finite = [v for v in values.values() if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


# ------------------------------------------------------------------------------------------ claims
def not_beaten(
    values: Mapping[str, Mapping[int, float]],
    margins: Mapping[str, float] | float,
    *,
    baseline: str = BASELINE,
    methods: Sequence[str] | None = None,
) -> Any:
    """003's "no method outperforms Unit. Scal.": every method is not better than the baseline by more than
    its margin (non-superiority, paired over seeds, Holm across the family). ``values`` are oriented so that
    higher is better; keys may be ``method`` or ``method/metric`` (then the baseline is ``baseline/metric``).
    Returns a :class:`~mtlbench.analysis.claims.Check` whose detail lists every comparison."""
    from mtlbench.analysis import claims as verdicts

    comparisons: dict[str, tuple[Mapping[int, float], Mapping[int, float]]] = {}
    margin_of: dict[str, float] = {}
    for key, by_seed in values.items():
        method, _, metric = key.partition("/")
        if method == baseline or (methods is not None and method not in methods):
            continue
        base = values.get(f"{baseline}/{metric}" if metric else baseline)
        margin = margins if isinstance(margins, int | float) else margins.get(metric or key)
        if base is None or not by_seed or margin is None or not margin > 0:
            continue
        comparisons[key] = (by_seed, base)
        margin_of[key] = float(margin)
    if not comparisons:
        return verdicts.Check(verdicts.INCONCLUSIVE, "no method ran next to Unit. Scal. at this scale")
    if len(set(margin_of.values())) == 1:
        checks = verdicts.check_family(
            comparisons, claim="no_difference", margin=next(iter(margin_of.values())), kind="not_greater"
        )
    else:  # one margin per metric: Holm over the raw p-values of the whole family
        from mtlbench.analysis.stats import holm

        raw = {
            k: verdicts.check_equivalence(a, b, margin=margin_of[k], kind="not_greater").p_value
            for k, (a, b) in comparisons.items()
        }
        names = list(raw)
        adjusted = dict(zip(names, holm([raw[n] for n in names]), strict=True))
        checks = {
            k: verdicts.check_equivalence(
                a,
                b,
                margin=margin_of[k],
                kind="not_greater",
                p_adjusted=adjusted[k] if math.isfinite(adjusted[k]) else None,
            )
            for k, (a, b) in comparisons.items()
        }
    combined = verdicts.combine(checks, require="all")
    detail = "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
    return verdicts.Check(combined.verdict, detail)


def ratio_range(
    ratios: Mapping[str, Mapping[int, float]],
    methods: Sequence[str],
    low: float,
    high: float = math.inf,
    *,
    what: str = "",
) -> Any:
    """Whether each method's runtime factor (per seed) lies in [low, high]. Timing on a shared machine is
    noisy, so: *holds* when every method's mean is inside; *does not hold* when a method's bootstrap 95% CI
    over at least :data:`MIN_TIMED` seeds lies entirely outside; otherwise *inconclusive*. Qualitative."""
    from mtlbench.analysis import claims as verdicts

    timed = {m: ratios[m] for m in methods if ratios.get(m)}
    if not timed:
        return verdicts.Check(verdicts.INCONCLUSIVE, "none of these methods was timed next to Unit. Scal.")
    parts, inside, outside = [], True, False
    for method, by_seed in timed.items():
        mean, ci, n = cell_value(list(by_seed.values()))
        assert mean is not None
        inside = inside and low <= mean <= high
        outside = outside or (n >= MIN_TIMED and ci is not None and (ci[1] < low or ci[0] > high))
        parts.append(f"{method} {mean:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" (n={n})")
    bound = f"[{low:.3g}, {high:.3g}]" if math.isfinite(high) else f">= {low:.3g}"
    detail = f"{what}time per epoch / Unit. Scal.'s in {bound}: " + ", ".join(parts)
    missing = [m for m in methods if m not in timed]
    if missing:
        detail += "; not timed: " + ", ".join(missing)
    if outside:
        return verdicts.Check(verdicts.DOES_NOT_HOLD, detail)
    if inside and not missing:
        return verdicts.Check(verdicts.HOLDS, detail)
    return verdicts.Check(verdicts.INCONCLUSIVE, detail + ("" if inside else "; a mean is outside, its CI is not"))


def cheapest(ratios: Mapping[str, Mapping[int, float]], tolerance: float = 0.1, baseline: str = BASELINE) -> Any:
    """003: "Unit. Scal. is the least expensive method": no method is faster than it by more than ``tolerance``
    (:func:`ratio_range` with [1 - tolerance, inf) over every timed method)."""
    from mtlbench.analysis import claims as verdicts

    others = [m for m, r in ratios.items() if m != baseline and r]
    if not others:
        return verdicts.Check(verdicts.INCONCLUSIVE, "no method timed next to Unit. Scal.")
    return ratio_range(ratios, others, 1 - tolerance, what=f"tolerance {tolerance:.0%}; ")


# ------------------------------------------------------------------------------------------ the study
class Accuracy003(SweepStudy):
    """A study of 003 Figs. 1/2: per method, the mean test accuracy (no published number) and the time per
    epoch relative to Unit. Scal. (published where 003's text gives a factor); claims: no method beats Unit.
    Scal. beyond ``margin`` accuracy (fraction) and Unit. Scal. is the cheapest; subclasses add more."""

    #: the sweep label whose report the cells read
    label: ClassVar[str] = ""
    #: the methods with cells (published or not)
    cell_methods: ClassVar[tuple[str, ...]] = SEVEN
    #: the figure that draws the accuracy, and the one that draws the runtime
    accuracy_source: ClassVar[str] = ""
    time_source: ClassVar[str] = ""
    #: method -> the runtime factor 003's text prints
    time_published: ClassVar[Mapping[str, Published]] = {}
    #: method -> the weight decay 003's text says it selected
    wd_published: ClassVar[Mapping[str, Published]] = {}
    #: the non-superiority margin in mean accuracy (fraction: 0.005 = 0.5 accuracy points)
    margin: ClassVar[float] = 0.005
    #: scale -> overlay applied only when a sweep's stand-in replaces the real data (its sizes)
    stand_in_overlays: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def spec_for(self, sweep: Any, scale: str) -> tuple[Any, list[str]]:
        """The base's spec, with :attr:`stand_in_overlays` under the study's overlay when the stand-in runs."""
        overlay = self.stand_in_overlays.get(scale)
        if overlay and sweep.stand_in is not None and scale != "paper" and not sweep.stand_in.available():
            import dataclasses

            from mtlbench.sweeps.spec import deep_merge

            merged = deep_merge(dict(overlay), dict(sweep.overlays.get(scale, {})))
            sweep = dataclasses.replace(sweep, overlays={**sweep.overlays, scale: merged})
        return super().spec_for(sweep, scale)

    def published_for(self, method: str, source: str) -> Published:
        if method in SEVEN:
            return no_number(source)
        return not_in_003(method)

    def cells(self) -> list[Cell]:
        out = []
        for m in self.cell_methods:
            out.append(
                Cell(
                    f"{self.label}/{m}/mean_acc",
                    f"{self.label}: {m} mean test accuracy",
                    self.published_for(m, self.accuracy_source),
                )
            )
        for m in self.cell_methods:
            if m == BASELINE:
                continue
            published = self.time_published.get(m) or self.published_for(m, self.time_source)
            out.append(
                Cell(
                    f"{self.label}/{m}/time_ratio",
                    f"{self.label}: {m} time per epoch / Unit. Scal.",
                    published,
                    "lower",
                    "x",
                )
            )
        for m, published in self.wd_published.items():
            out.append(Cell(f"{self.label}/{m}/weight_decay", f"{self.label}: {m} selected weight decay", published))
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "not_beaten",
                f"No method outperforms Unit. Scal. on {self.label} (mean test accuracy)",
                self.accuracy_source,
                "no_difference",
                f"margin {self.margin * 100:g} accuracy points (non-superiority, paired over seeds, Holm)",
            ),
            Claim(
                "unit_scal_cheapest",
                f"Unit. Scal. is among the least expensive methods per epoch on {self.label}",
                self.time_source,
                "qualitative",
            ),
        ]

    # the Delta_m cells and method claims of SweepStudy do not apply: 003 compares accuracies
    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        return None

    def _claims(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        return None

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        report = reports[self.label]
        ran = [r.method for r in report.methods]
        accuracy = {m: mean_test_accuracy(report, m) for m in ran}
        seconds = {m: method_seconds(context, report, m) for m in ran}
        ratios = time_ratios(seconds)
        by_key = {c.key: c for c in self.cells()}
        for key, cell in by_key.items():
            _, method, what = key.split("/")
            note = f"not run at {outcome.scale} scale" if method not in ran else "no completed final run"
            if what == "mean_acc":
                values = accuracy.get(method, {})
            elif what == "time_ratio":
                values = ratios.get(method, {})
            else:  # the selected weight decay of the configuration search
                values = self.selected_value(report, method, "weight_decay")
            mean, ci, n = cell_value(list(values.values()))
            outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else note))
        for m in ran:  # methods of the sweep without a declared cell (e.g. a wider spec)
            if f"{self.label}/{m}/mean_acc" not in by_key:
                cell = Cell(f"{self.label}/{m}/mean_acc", f"{self.label}: {m} mean test accuracy", not_in_003(m))
                mean, ci, n = cell_value(list(accuracy[m].values()))
                outcome.cells.append(CellResult(cell, mean, ci, n))
        declared = {c.key: c for c in self.claims()}
        check = not_beaten(accuracy, self.margin)
        outcome.claims.append(ClaimResult(declared["not_beaten"], check.verdict, check.detail))
        check = cheapest(ratios)
        outcome.claims.append(ClaimResult(declared["unit_scal_cheapest"], check.verdict, check.detail))
        outcome.tables["Time per epoch (training only, s)"] = seconds_table(seconds, ratios)
        outcome.notes.append(TIMING_NOTE)
        self.more(outcome, reports, context, accuracy=accuracy, ratios=ratios)

    def more(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext, **values: Any) -> None:
        """Subclasses add claims and tables here."""

    @staticmethod
    def selected_value(report: Any, method: str, key: str) -> dict[int, float]:
        for result in report.methods:
            best = result.selection.best
            if result.method == method and best is not None and key in best.values:
                return {0: float(best.values[key])}
        for result in report.methods:  # a value fixed by the spec (not searched)
            if result.method == method:
                settings = {**report.spec.settings, **report.spec.method_settings.get(method, {})}
                if key in settings:
                    return {0: float(settings[key])}
        return {}


def seconds_table(seconds: Mapping[str, Mapping[int, float]], ratios: Mapping[str, Mapping[int, float]]) -> str:
    """Markdown: per method, the mean training seconds per epoch, its ratio to Unit. Scal., and the seeds."""
    rows = ["| method | s / epoch | / Unit. Scal. | seeds |", "|---|---|---|---|"]
    for method, by_seed in seconds.items():
        mean = mean_of(by_seed)
        ratio = mean_of(ratios.get(method, {}))
        rows.append(
            f"| {method} | {'-' if mean is None else f'{mean:.4g}'} | {'-' if ratio is None else f'{ratio:.3g}'} "
            f"| {len(by_seed)} |"
        )
    return "\n".join(rows)


__all__ = [
    "BASELINE",
    "MIN_TIMED",
    "SEVEN",
    "SEVEN_LABELS",
    "SHORTLIST_000",
    "Accuracy003",
    "cheapest",
    "epoch_seconds",
    "final_runs",
    "mean_of",
    "mean_test_accuracy",
    "method_seconds",
    "not_beaten",
    "not_in_003",
    "ratio_published",
    "ratio_range",
    "seconds_table",
    "time_ratios",
]
