"""The verdict logic of the studies on synthetic seeds with known outcomes (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mtlbench.analysis import claims
from mtlbench.analysis.claims import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _seeds(values) -> dict[int, float]:
    return {seed: float(v) for seed, v in enumerate(values)}


def test_paired_difference_uses_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(0, 1, 10)
    a = b + 0.5 + rng.normal(0, 0.3, 10)
    check = claims.check_difference(_seeds(a), _seeds(b), alternative="greater")
    assert check.verdict == HOLDS
    assert check.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    assert check.difference == pytest.approx(float(np.mean(a - b)))


def test_unpaired_difference_uses_welch() -> None:
    a, b = [1.0, 1.2, 0.9, 1.1], [0.0, 0.3, -0.2, 0.1, 0.05]
    check = claims.check_difference(a, b)
    assert check.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-10)
    assert check.verdict == HOLDS


def test_difference_in_the_other_direction_does_not_hold() -> None:
    b = _seeds([0.0, 0.1, -0.1, 0.05, 0.02, -0.03])
    a = {s: v - 1.0 for s, v in b.items()}
    a = {s: v + 0.01 * s for s, v in a.items()}
    assert claims.check_difference(a, b, alternative="greater").verdict == DOES_NOT_HOLD
    assert claims.check_difference(a, b, alternative="less").verdict == HOLDS


def test_non_significant_with_low_power_is_inconclusive_with_seeds_needed() -> None:
    rng = np.random.default_rng(1)
    b = rng.normal(0, 1, 3)
    a = b + rng.normal(0, 1, 3)  # no true difference, 3 seeds, large noise
    check = claims.check_difference(_seeds(a), _seeds(b), effect=0.5)
    assert check.verdict == INCONCLUSIVE
    assert check.power < claims.POWER
    sd = float(np.std(a - b, ddof=1))
    needed = check.seeds_needed
    assert needed is not None and needed > 3
    # the proposed count is the first with enough power
    assert claims.difference_power(0.5, sd, needed, paired=True) >= claims.POWER
    assert claims.difference_power(0.5, sd, needed - 1, paired=True) < claims.POWER


def test_non_significant_with_high_power_does_not_hold() -> None:
    rng = np.random.default_rng(2)
    b = rng.normal(0, 1, 40)
    a = b + rng.normal(0, 0.01, 40)  # tight: a 0.5 effect would have been seen
    a = a - np.mean(a - b)  # mean difference exactly 0
    check = claims.check_difference(_seeds(a), _seeds(b), effect=0.5)
    assert check.verdict == DOES_NOT_HOLD
    assert check.power > 0.99


def test_no_effect_size_means_inconclusive() -> None:
    check = claims.check_difference([1.0, 2.0, 3.0], [1.5, 2.5, 1.0])
    assert check.verdict == INCONCLUSIVE


def test_difference_power_matches_the_noncentral_t() -> None:
    n, sd, effect = 8, 2.0, 1.5
    df, nc = n - 1, effect / sd * math.sqrt(n)
    crit = stats.t.ppf(0.975, df)
    expected = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert claims.difference_power(effect, sd, n, paired=True) == pytest.approx(expected)


def test_equivalence_holds_when_tight_and_centred() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1, 10)
    a = b + rng.normal(0, 0.01, 10)
    for kind in ("equal", "not_greater"):
        check = claims.check_equivalence(_seeds(a), _seeds(b), margin=0.1, kind=kind)
        assert check.verdict == HOLDS, check.detail


def test_equivalence_tost_p_value_by_hand() -> None:
    diffs = np.array([0.02, -0.01, 0.03, 0.0, 0.01])
    b = np.zeros(5)
    margin = 0.05
    check = claims.check_equivalence(_seeds(diffs), _seeds(b), margin=margin, kind="equal")
    mean, se, df = diffs.mean(), diffs.std(ddof=1) / math.sqrt(5), 4
    p_upper = stats.t.cdf((mean - margin) / se, df)
    p_lower = stats.t.sf((mean + margin) / se, df)
    assert check.p_value == pytest.approx(max(p_upper, p_lower))


def test_a_better_method_breaks_non_superiority() -> None:
    b = _seeds([0.0, 0.01, -0.01, 0.02, 0.0, -0.02])
    a = {s: v + 1.0 + 0.001 * s for s, v in b.items()}
    check = claims.check_equivalence(a, b, margin=0.1, kind="not_greater")
    assert check.verdict == DOES_NOT_HOLD
    # a much worse method is not better: non-superiority holds, TOST (equal) does not
    worse = {s: v - 1.0 + 0.001 * s for s, v in b.items()}
    assert claims.check_equivalence(worse, b, margin=0.1, kind="not_greater").verdict == HOLDS
    assert claims.check_equivalence(worse, b, margin=0.1, kind="equal").verdict == DOES_NOT_HOLD


def test_a_non_significant_difference_never_makes_no_difference_hold() -> None:
    rng = np.random.default_rng(4)
    b = rng.normal(0, 1, 3)
    a = b + rng.normal(0, 1, 3)
    assert claims.check_difference(_seeds(a), _seeds(b), effect=10).p_value > 0.05
    check = claims.check_equivalence(_seeds(a), _seeds(b), margin=0.1, kind="equal")
    assert check.verdict == INCONCLUSIVE
    assert check.seeds_needed is None or check.seeds_needed > 3


def test_family_is_holm_adjusted() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, 6)
    comparisons = {
        "strong": (_seeds(base + 2 + rng.normal(0, 0.1, 6)), _seeds(base)),
        "weak": (_seeds(base + 0.15 + rng.normal(0, 0.1, 6)), _seeds(base)),
        "none": (_seeds(base + rng.normal(0, 0.1, 6)), _seeds(base)),
    }
    raw = {name: claims.check_difference(a, b).p_value for name, (a, b) in comparisons.items()}
    family = claims.check_family(comparisons, claim="difference", effect=1.0)
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[name]))
        expected[name] = running
    for name in comparisons:
        assert family[name].p_value == pytest.approx(expected[name])
    assert family["strong"].verdict == HOLDS


def test_combine_all_and_any() -> None:
    h, n, i = claims.Check(HOLDS, ""), claims.Check(DOES_NOT_HOLD, ""), claims.Check(INCONCLUSIVE, "")
    assert claims.combine({"a": h, "b": h}).verdict == HOLDS
    assert claims.combine({"a": h, "b": n}).verdict == DOES_NOT_HOLD
    assert claims.combine({"a": h, "b": i}).verdict == INCONCLUSIVE
    assert claims.combine({"a": n, "b": h}, require="any").verdict == HOLDS
    assert claims.combine({"a": n, "b": n}, require="any").verdict == DOES_NOT_HOLD
    assert claims.combine({}).verdict == INCONCLUSIVE
    assert claims.combine({"a": h, "b": h, "c": n}, require="majority").verdict == HOLDS
    assert claims.combine({"a": h, "b": n, "c": n}, require="majority").verdict == DOES_NOT_HOLD
    assert claims.combine({"a": h, "b": i, "c": i}, require="majority").verdict == INCONCLUSIVE


def test_family_effects_per_comparison() -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(0, 1, 3)
    noisy = {
        "x": (_seeds(base + rng.normal(0, 1, 3)), _seeds(base)),
        "y": (_seeds(base + rng.normal(0, 1, 3)), _seeds(base)),
    }
    family = claims.check_family(noisy, claim="difference", effect=0.01, effects={"y": 100.0})
    assert family["x"].verdict == INCONCLUSIVE  # a tiny effect: no power
    assert family["y"].power > family["x"].power


def test_margin_must_be_positive() -> None:
    with pytest.raises(ValueError, match="margin"):
        claims.check_equivalence([1.0, 2.0], [1.0, 2.0], margin=0)
