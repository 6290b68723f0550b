"""Verdicts on the papers' claims: *holds*, *does not hold* or *inconclusive*, from stored seeds.

Two kinds of claims are checked (the studies of :mod:`mtlbench.studies` declare which):

* **A difference** ("Adam beats SGD", "IMTL beats Unit. Scal. on 19 classes"): a two-sided test of
  the mean difference -- paired over seeds (``scipy.stats.ttest_rel``) where both sides share their
  seeds, Welch's test otherwise -- at ``alpha`` after Holm's adjustment across the family of
  comparisons. Significant in the claimed direction: *holds*; significant the other way: *does not
  hold*; not significant: *inconclusive* when the power for the paper's effect (or, where the paper
  prints none, a stated minimal effect) at our variance is below 0.8 -- with the number of seeds that
  would decide it -- and *does not hold* when the test had that power.
* **No difference** ("no method beats Unit. Scal."): an equivalence test with a stated margin. Two
  one-sided tests (TOST, Schuirmann 1987) for "equal within the margin", or its upper half alone for
  "not better by more than the margin" (non-superiority). The claim *holds* only when the
  equivalence test rejects; it *does not hold* when the difference exceeds the margin significantly;
  otherwise it is *inconclusive*, with the seeds an equivalence test would need. A non-significant
  difference test never makes a no-difference claim hold.

Every function takes the values of side ``a`` and side ``b`` (one value per seed, higher or lower is
better as the caller orients them: pass values where **higher is better**) and returns a
:class:`Check` with a one-line ``detail``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from mtlbench.analysis.stats import holm

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
#: the power below which a non-significant difference test is inconclusive
POWER = 0.8
#: the largest number of seeds proposed to decide a claim
MAX_SEEDS = 1000

Alternative = Literal["greater", "less"]
Equivalence = Literal["equal", "not_greater"]


@dataclass(frozen=True)
class Check:
    """The verdict on one comparison, with the numbers behind it."""

    verdict: str
    detail: str
    difference: float = math.nan
    p_value: float = math.nan
    power: float = math.nan
    seeds_needed: int | None = None
    n: int = 0


@dataclass(frozen=True)
class _Sample:
    """The per-seed differences a - b (paired) or the two groups (unpaired), with the test's df and se."""

    difference: float
    se: float
    df: float
    n: int
    sd: float
    paired: bool


def _values(values: Sequence[float] | Mapping[int, float]) -> dict[int, float] | np.ndarray:
    if isinstance(values, Mapping):
        return {int(k): float(v) for k, v in values.items() if math.isfinite(float(v))}
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def _sample(a: Sequence[float] | Mapping[int, float], b: Sequence[float] | Mapping[int, float]) -> _Sample | None:
    """Paired when both sides are ``{seed: value}`` mappings sharing at least two seeds, else Welch."""
    x, y = _values(a), _values(b)
    if isinstance(x, dict) and isinstance(y, dict):
        shared = sorted(set(x) & set(y))
        if len(shared) >= 2:
            diffs = np.array([x[s] - y[s] for s in shared])
            sd = float(diffs.std(ddof=1))
            return _Sample(float(diffs.mean()), sd / math.sqrt(len(shared)), len(shared) - 1, len(shared), sd, True)
        x, y = np.array(list(x.values())), np.array(list(y.values()))
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1)) if vx + vy > 0 else x.size + y.size - 2
    sd = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    return _Sample(float(x.mean() - y.mean()), se, df, min(x.size, y.size), sd, False)


def _t_p_two_sided(sample: _Sample) -> float:
    if sample.se == 0:
        return 1.0 if sample.difference == 0 else 0.0
    return float(2 * stats.t.sf(abs(sample.difference / sample.se), sample.df))


def difference_power(effect: float, sd: float, n: int, *, paired: bool, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test to detect a mean difference ``effect`` at per-seed sd ``sd`` with n seeds
    (paired: one-sample test of the differences; unpaired: two groups of n)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    if paired:
        df, noncentrality = n - 1, abs(effect) / sd * math.sqrt(n)
    else:
        df, noncentrality = 2 * n - 2, abs(effect) / sd * math.sqrt(n / 2)
    critical = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(all="ignore"):
        power = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not math.isfinite(power):
        power = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return min(max(power, 0.0), 1.0)


def _seeds_for(power_at: Callable[[int], float]) -> int | None:
    """The fewest seeds (2..MAX_SEEDS) whose power reaches :data:`POWER`; None when none does."""
    if not power_at(MAX_SEEDS) >= POWER:
        return None
    low, high = 2, MAX_SEEDS
    while low < high:
        mid = (low + high) // 2
        if power_at(mid) >= POWER:
            high = mid
        else:
            low = mid + 1
    return low


def check_difference(
    a: Sequence[float] | Mapping[int, float],
    b: Sequence[float] | Mapping[int, float],
    *,
    alternative: Alternative = "greater",
    effect: float | None = None,
    alpha: float = 0.05,
    p_adjusted: float | None = None,
) -> Check:
    """Does ``a`` differ from ``b`` in the claimed direction (``greater``: a > b)?

    ``effect`` is the paper's difference (or a stated minimal effect) in the values' units, used for the
    power of a non-significant test; ``p_adjusted`` replaces the raw p-value (Holm across a family).
    """
    sample = _sample(a, b)
    if sample is None:
        return Check(INCONCLUSIVE, "fewer than 2 seeds on a side: no test", seeds_needed=None)
    p_raw = _t_p_two_sided(sample)
    p = p_raw if p_adjusted is None else p_adjusted
    sign = 1 if alternative == "greater" else -1
    test = "paired t" if sample.paired else "Welch t"
    head = (
        f"{test}: a-b={sample.difference:+.4g} (n={sample.n}), p={p:.3g}{' (Holm)' if p_adjusted is not None else ''}"
    )
    if p < alpha:
        if sign * sample.difference > 0:
            return Check(HOLDS, head, sample.difference, p, n=sample.n)
        return Check(DOES_NOT_HOLD, f"{head}: significant in the other direction", sample.difference, p, n=sample.n)
    if effect is None or not math.isfinite(effect) or effect == 0:
        return Check(INCONCLUSIVE, f"{head}: not significant and no effect size to judge power", sample.difference, p)
    power = difference_power(effect, sample.sd, sample.n, paired=sample.paired, alpha=alpha)
    needed = _seeds_for(lambda n: difference_power(effect, sample.sd, n, paired=sample.paired, alpha=alpha))
    if power >= POWER:
        text = f"{head}: not significant although the power for an effect of {effect:.4g} is {power:.2f}"
        return Check(DOES_NOT_HOLD, text, sample.difference, p, power, needed, sample.n)
    decide = f"~{needed} seeds would decide it" if needed is not None else f"more than {MAX_SEEDS} seeds needed"
    text = f"{head}: power {power:.2f} < {POWER} for an effect of {effect:.4g}; {decide}"
    return Check(INCONCLUSIVE, text, sample.difference, p, power, needed, sample.n)


def _equivalence_p(sample: _Sample, margin: float, kind: Equivalence) -> tuple[float, float]:
    """(p of "within the margin", p of "beyond the margin") for TOST (``equal``) or its upper half."""
    if sample.se == 0:
        inside = abs(sample.difference) < margin if kind == "equal" else sample.difference < margin
        return (0.0, 1.0) if inside else (1.0, 0.0)
    upper = float(stats.t.cdf((sample.difference - margin) / sample.se, sample.df))  # H0: diff >= margin
    if kind == "not_greater":
        beyond = float(stats.t.sf((sample.difference - margin) / sample.se, sample.df))  # H0: diff <= margin
        return upper, beyond
    lower = float(stats.t.sf((sample.difference + margin) / sample.se, sample.df))  # H0: diff <= -margin
    beyond_high = float(stats.t.sf((sample.difference - margin) / sample.se, sample.df))
    beyond_low = float(stats.t.cdf((sample.difference + margin) / sample.se, sample.df))
    return max(upper, lower), min(1.0, 2 * min(beyond_high, beyond_low))


def equivalence_power(
    margin: float, sd: float, n: int, *, paired: bool, kind: Equivalence, alpha: float = 0.05
) -> float:
    """Power of the equivalence test when the true difference is 0 (normal approximation of the t)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 1.0
    se = sd / math.sqrt(n) if paired else sd * math.sqrt(2 / n)
    df = n - 1 if paired else 2 * n - 2
    critical = stats.t.ppf(1 - alpha, df)
    one_side = float(stats.t.cdf(margin / se - critical, df))
    return max(0.0, 2 * one_side - 1) if kind == "equal" else one_side


def check_equivalence(
    a: Sequence[float] | Mapping[int, float],
    b: Sequence[float] | Mapping[int, float],
    *,
    margin: float,
    kind: Equivalence = "not_greater",
    alpha: float = 0.05,
    p_adjusted: float | None = None,
) -> Check:
    """Is ``a`` within ``margin`` of ``b`` (``equal``), or not better than ``b`` by more than ``margin``
    (``not_greater``, values oriented so that higher is better)?"""
    if not margin > 0:
        raise ValueError(f"margin={margin!r} must be > 0")
    sample = _sample(a, b)
    if sample is None:
        return Check(INCONCLUSIVE, "fewer than 2 seeds on a side: no test")
    p_inside, p_beyond = _equivalence_p(sample, margin, kind)
    p = p_inside if p_adjusted is None else p_adjusted
    what = "TOST" if kind == "equal" else "non-superiority"
    bound = f"|a-b| < {margin:.4g}" if kind == "equal" else f"a-b < {margin:.4g}"
    head = f"{what} ({bound}): a-b={sample.difference:+.4g} (n={sample.n}), p={p:.3g}"
    if p_adjusted is not None:
        head += " (Holm)"
    if p < alpha:
        return Check(HOLDS, head, sample.difference, p, n=sample.n)
    if p_beyond < alpha:
        return Check(
            DOES_NOT_HOLD, f"{head}: the difference exceeds the margin (p={p_beyond:.3g})", sample.difference, p
        )
    power = equivalence_power(margin, sample.sd, sample.n, paired=sample.paired, kind=kind, alpha=alpha)
    needed = _seeds_for(lambda n: equivalence_power(margin, sample.sd, n, paired=sample.paired, kind=kind, alpha=alpha))
    decide = f"~{needed} seeds would decide it" if needed is not None else f"more than {MAX_SEEDS} seeds needed"
    return Check(INCONCLUSIVE, f"{head}: not shown; {decide}", sample.difference, p, power, needed, sample.n)


def check_family(
    comparisons: Mapping[str, tuple[Sequence[float] | Mapping[int, float], Sequence[float] | Mapping[int, float]]],
    *,
    claim: Literal["difference", "no_difference"],
    alternative: Alternative = "greater",
    effect: float | None = None,
    margin: float | None = None,
    kind: Equivalence = "not_greater",
    alpha: float = 0.05,
    effects: Mapping[str, float] | None = None,
) -> dict[str, Check]:
    """Check several comparisons of one claim (e.g. every method against Unit. Scal.), Holm-adjusted.

    ``effects`` gives a comparison its own effect size (e.g. the paper's difference for that method);
    the others use ``effect``."""
    raw: dict[str, float] = {}
    for name, (a, b) in comparisons.items():
        if claim == "difference":
            raw[name] = check_difference(a, b, alternative=alternative, effect=effect, alpha=alpha).p_value
        else:
            if margin is None:
                raise ValueError("a no-difference claim needs a margin")
            raw[name] = check_equivalence(a, b, margin=margin, kind=kind, alpha=alpha).p_value
    names = list(raw)
    adjusted = dict(zip(names, holm([raw[n] for n in names]), strict=True))
    out: dict[str, Check] = {}
    for name, (a, b) in comparisons.items():
        p = adjusted[name] if math.isfinite(adjusted[name]) else None
        if claim == "difference":
            size = (effects or {}).get(name, effect)
            out[name] = check_difference(a, b, alternative=alternative, effect=size, alpha=alpha, p_adjusted=p)
        else:
            out[name] = check_equivalence(a, b, margin=margin, kind=kind, alpha=alpha, p_adjusted=p)
    return out


def combine(checks: Mapping[str, Check], *, require: Literal["all", "any", "majority"] = "all") -> Check:
    """One verdict from several: ``all`` -- holds when every check holds, does not hold when any does not;
    ``any`` -- holds when any holds, does not hold when all do not; ``majority`` -- holds when more than half
    hold, does not hold when at least half do not. Otherwise inconclusive."""
    verdicts = [c.verdict for c in checks.values()]
    if not verdicts:
        return Check(INCONCLUSIVE, "nothing to compare")
    detail = "; ".join(f"{name}: {c.verdict}" for name, c in checks.items())
    if require == "majority":
        holds, fails = verdicts.count(HOLDS), verdicts.count(DOES_NOT_HOLD)
        if 2 * holds > len(verdicts):
            return Check(HOLDS, detail)
        if 2 * fails >= len(verdicts):
            return Check(DOES_NOT_HOLD, detail)
        return Check(INCONCLUSIVE, detail)
    if require == "all":
        if all(v == HOLDS for v in verdicts):
            return Check(HOLDS, detail)
        if any(v == DOES_NOT_HOLD for v in verdicts):
            return Check(DOES_NOT_HOLD, detail)
        return Check(INCONCLUSIVE, detail)
    if any(v == HOLDS for v in verdicts):
        return Check(HOLDS, detail)
    if all(v == DOES_NOT_HOLD for v in verdicts):
        return Check(DOES_NOT_HOLD, detail)
    return Check(INCONCLUSIVE, detail)


def qualitative(condition: bool | None, detail: str) -> Check:
    """A check drawn from a figure or a shape (no test): holds / does not hold, or inconclusive when unknown."""
    if condition is None:
        return Check(INCONCLUSIVE, detail)
    return Check(HOLDS if condition else DOES_NOT_HOLD, detail)


__all__ = [
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "POWER",
    "VERDICTS",
    "Check",
    "check_difference",
    "check_equivalence",
    "check_family",
    "combine",
    "difference_power",
    "equivalence_power",
    "qualitative",
]
