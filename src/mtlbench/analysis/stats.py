"""Statistics for comparing methods over seeds: bootstrap CIs, Welch's t-test, Mann–Whitney U, power.

* :func:`bootstrap_ci` -- percentile bootstrap CI of the mean (resampling seeds with replacement).
* :func:`welch_test` -- Welch's unequal-variance t-test (two-sided), with the Welch–Satterthwaite df.
* :func:`mann_whitney` -- two-sided Mann–Whitney U (exact p-value for small samples without ties).
* :func:`welch_power` / :func:`minimal_detectable_effect` -- power of the two-sided t-test against a
  standardised difference (Cohen's d) via the noncentral t distribution, and the smallest d detected
  with 80% power: with few seeds only large differences are detectable, and a non-significant result
  is no evidence that two methods are equal.
* :func:`holm` -- Holm's step-down adjustment of several p-values (many methods against one baseline).
* :func:`describe` -- min, max, median, std and mean (000 Table 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

#: minimum seeds per group for the rank test (the brief and 000 use 10 seeds per method)
RANK_TEST_MIN_SEEDS = 10


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; (nan, nan) with fewer than 2 finite values."""
    data = _finite(values)
    if data.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float
    df: float = math.nan


def welch_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Welch's two-sided t-test of mean(a) == mean(b); NaN with fewer than 2 values in a group."""
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2:
        return TestResult(math.nan, math.nan)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        equal = float(x.mean()) == float(y.mean())
        return TestResult(0.0 if equal else math.copysign(math.inf, x.mean() - y.mean()), 1.0 if equal else 0.0)
    result = stats.ttest_ind(x, y, equal_var=False)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return TestResult(float(result.statistic), float(result.pvalue), float(df))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann–Whitney U test (exact p without ties, else normal approximation); U of ``a``."""
    x, y = _finite(a), _finite(b)
    if x.size < 1 or y.size < 1:
        return TestResult(math.nan, math.nan)
    ties = np.unique(np.concatenate([x, y])).size < x.size + y.size
    method = "exact" if not ties and x.size * y.size <= 2500 else "asymptotic"  # scipy's auto: exact only to n=8
    result = stats.mannwhitneyu(x, y, alternative="two-sided", method=method)
    return TestResult(float(result.statistic), float(result.pvalue))


def welch_power(effect_size: float, n1: int, n2: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test at standardised difference ``effect_size`` (Cohen's d)."""
    if n1 < 2 or n2 < 2:
        return math.nan
    df = n1 + n2 - 2
    noncentrality = abs(effect_size) * math.sqrt(n1 * n2 / (n1 + n2))
    critical = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(all="ignore"):
        power = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not math.isfinite(power):  # scipy's noncentral t fails far in the tail, where the power is ~1
        power = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return min(max(power, 0.0), 1.0)


def minimal_detectable_effect(n1: int, n2: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Smallest Cohen's d the two-sided t-test detects with probability ``power``; NaN if n < 2."""
    if n1 < 2 or n2 < 2:
        return math.nan
    return float(optimize.brentq(lambda d: welch_power(d, n1, n2, alpha) - power, 1e-6, 1e3))


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """sqrt of the mean of the two sample variances (the scale of Cohen's d)."""
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2:
        return math.nan
    return float(math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN entries are ignored and stay NaN)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p == p]
    adjusted = [math.nan] * len(p_values)
    m = len(indexed)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def describe(values: Sequence[float]) -> dict[str, float]:
    """min, max, median, std (ddof 1) and mean of the finite values (000 Table 5)."""
    data = _finite(values)
    if data.size == 0:
        return {name: math.nan for name in ("min", "max", "median", "std", "mean")}
    return {
        "min": float(data.min()),
        "max": float(data.max()),
        "median": float(np.median(data)),
        "std": float(data.std(ddof=1)) if data.size > 1 else math.nan,
        "mean": float(data.mean()),
    }


__all__ = [
    "RANK_TEST_MIN_SEEDS",
    "TestResult",
    "bootstrap_ci",
    "describe",
    "holm",
    "mann_whitney",
    "minimal_detectable_effect",
    "pooled_std",
    "welch_power",
    "welch_test",
]
