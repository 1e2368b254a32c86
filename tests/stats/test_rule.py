"""The verdict rule (`armin.stats.rule`): sign-flip p, t interval, p_value/verdict agreement, small-n guards."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from armin.stats.rule import (FLIP_DRAWS, Level, decide, decide_batch, flip_min_pairs, guard_min_pairs, sign_flip_p,
                              t_interval)


def brute_force_flip_p(d: np.ndarray) -> float:
    """Share of all 2^n sign patterns whose |signed sum| reaches the observed |sum| (observed included)."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-9
               for signs in itertools.product((1.0, -1.0), repeat=len(d)))
    return hits / 2 ** len(d)


def plain_t_interval(d: list[float], confidence: float) -> tuple[float, float]:
    """mean +- t_{(1 + confidence) / 2, n - 1} sd / sqrt(n), written out in float64."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = sps.t.ppf((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


# The exact sign-flip p is the share of the 2^n sign patterns at least as extreme, ties included.
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11])
def test_sign_flip_p_matches_brute_force_enumeration(n):
    rng = np.random.default_rng(n)
    cols = [rng.normal(0.3, 1.0, n), rng.integers(-2, 3, n).astype(float), np.full(n, 0.5), np.zeros(n)]
    got = sign_flip_p(np.column_stack(cols))
    assert got == pytest.approx([brute_force_flip_p(list(c)) for c in cols], abs=1e-12)


# Above FLIP_EXACT_MAX_N the random patterns estimate the exact p (15 pairs: 32,768 patterns to enumerate).
def test_random_sign_flips_estimate_the_exact_p():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, (15, 6))
    exact = np.array([brute_force_flip_p(list(c)) for c in d.T])
    got = sign_flip_p(d)
    assert np.all(got >= 1.0 / (1 + FLIP_DRAWS))
    assert np.abs(got - exact).max() < 4 * math.sqrt(0.25 / FLIP_DRAWS)


# The comparison interval is the Student-t interval at 1 - alpha / (m K), and t_interval the same formula.
@pytest.mark.parametrize("n,m,looks", [(2, 1, 1), (3, 1, 1), (7, 4, 1), (12, 3, 5), (30, 8, 5)])
def test_interval_is_the_plain_t_interval(n, m, looks):
    rng = np.random.default_rng(n * m)
    d = rng.standard_t(3, (n, 5))
    level = Level(alpha=0.05, m=m, looks=looks)
    out = decide_batch(d, rope=0.5, level=level)
    plain = np.array([plain_t_interval(list(c), 1.0 - level.each) for c in d.T])  # (5, 2)
    assert out["ci_low"] == pytest.approx(plain[:, 0], rel=1e-12, abs=1e-12)
    assert out["ci_high"] == pytest.approx(plain[:, 1], rel=1e-12, abs=1e-12)
    low, high = t_interval(d, 0.95)
    assert np.column_stack([low, high]) == pytest.approx(np.array([plain_t_interval(list(c), 0.95) for c in d.T]))
    assert t_interval(d[:, 0], 0.95) == pytest.approx(plain_t_interval(list(d[:, 0]), 0.95))


def test_t_interval_is_nan_below_two_values_and_the_point_for_constant_values():
    assert all(math.isnan(v) for v in t_interval(np.array([1.0]), 0.95))
    assert t_interval(np.full(4, 2.5), 0.95) == (2.5, 2.5)
    low, high = t_interval(np.ones((1, 3)), 0.95)
    assert low.shape == (3,) and np.isnan(low).all() and np.isnan(high).all()


def random_tables(count: int, seed: int):
    """Improvement columns of every kind: normal, heavy-tailed, discrete with ties, shifted, constant."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 31))
        kind = rng.integers(5)
        if kind == 0:
            d = rng.normal(rng.normal(0, 1), 1.0, n)
        elif kind == 1:
            d = rng.standard_t(2, n) + rng.normal(0, 0.5)
        elif kind == 2:
            d = rng.integers(-1, 3, n).astype(float)
        elif kind == 3:
            d = np.where(rng.random(n) < 0.3, -15.0, 0.0)
        else:
            d = np.full(n, float(rng.choice([0.0, 0.2, 2.0])))
        yield d, Level(alpha=float(rng.choice([0.01, 0.05, 0.1])), m=int(rng.integers(1, 9)),
                       looks=int(rng.integers(1, 6))), float(rng.choice([0.0, 0.1, 0.5, 2.0]))


# "better"/"worse" iff p_value < alpha; the interval then excludes 0 on the side of the verdict;
# "equivalent" iff not significant and p_equivalence < alpha, the interval then inside the ROPE.
def test_p_value_and_interval_agree_with_the_verdict_on_random_tables():
    for d, level, rope in random_tables(2000, seed=0):
        dec = decide(d, rope=rope, level=level)
        significant = dec.p_value < level.alpha
        assert (dec.verdict in ("better", "worse")) == significant
        if dec.verdict == "better":
            assert dec.ci_low > 0 and dec.mean > 0
        if dec.verdict == "worse":
            assert dec.ci_high < 0 and dec.mean < 0
        assert (dec.verdict == "equivalent") == (not significant and dec.p_equivalence < level.alpha)
        if dec.verdict == "equivalent":
            assert -rope < dec.ci_low <= dec.ci_high < rope
        assert dec.p_value == pytest.approx(min(1.0, level.multiplier * max(dec.p_t, dec.p_flip)))


# Computing the sign-flip test only where it can matter changes no verdict.
def test_lazy_sign_flip_gives_the_same_verdicts():
    for n in (3, 9, 14, 15, 25):
        rng = np.random.default_rng(n)
        d = rng.normal(rng.normal(0, 0.8, 400)[None, :], 1.0, (n, 400))
        level = Level(alpha=0.05, m=3, looks=2)
        full, lazy = decide_batch(d, rope=0.5, level=level), decide_batch(d, rope=0.5, level=level, lazy=True)
        assert (full["verdict"] == lazy["verdict"]).all()
        done = ~np.isnan(lazy["p_flip"])
        assert (lazy["p_flip"][done] == full["p_flip"][done]).all()


# Constant differences have no spread: never "better" at 3 pairs (2 / 2^3 > alpha), and an unbounded interval.
@pytest.mark.parametrize("value", [0.1, 1.0, -3.0])
def test_constant_differences_at_three_pairs_are_not_significant_and_unbounded(value):
    for m in (1, 4):
        dec = decide(np.full(3, value), rope=0.5, level=Level(alpha=0.05, m=m))
        assert dec.verdict == "inconclusive"
        assert (dec.ci_low, dec.ci_high) == (-math.inf, math.inf)


def test_constant_differences_become_the_point_once_the_sign_flip_test_can_reach_the_level():
    level = Level(alpha=0.05, m=2)
    n = flip_min_pairs(level)
    before = decide(np.full(n - 1, 1.0), rope=0.5, level=level)
    at = decide(np.full(n, 1.0), rope=0.5, level=level)
    assert before.verdict == "inconclusive" and math.isinf(before.ci_low)
    assert at.verdict == "better" and (at.ci_low, at.ci_high) == (1.0, 1.0)


# All-tied seeds are not "equivalent" before the guard's n: a failure mode on 25% of seeds could hide.
@pytest.mark.parametrize("m,looks", [(1, 1), (3, 1), (8, 5)])
def test_all_tied_seeds_are_equivalent_only_from_the_guard_n(m, looks):
    level = Level(alpha=0.05, m=m, looks=looks)
    n = guard_min_pairs(level)
    assert 0.75 ** n < level.each <= 0.75 ** (n - 1)
    assert decide(np.zeros(n - 1), rope=0.5, level=level).verdict == "inconclusive"
    assert decide(np.zeros(n), rope=0.5, level=level).verdict == "equivalent"
    assert decide(np.zeros(n + 5), rope=0.0, level=level).verdict == "inconclusive"  # no ROPE: never equivalent


# A weak guard (rare_share above 1/2) must not let an unbounded interval count as inside the ROPE.
def test_constant_differences_are_equivalent_only_when_their_interval_is_inside_the_rope():
    level = Level(alpha=0.05, m=1)
    for n in range(2, 12):
        dec = decide(np.zeros(n), rope=0.5, level=level, rare_share=0.9)
        assert (dec.verdict == "equivalent") == (math.isfinite(dec.ci_low) and -0.5 < dec.ci_low <= dec.ci_high < 0.5)
    assert decide(np.zeros(flip_min_pairs(level)), rope=0.5, level=level, rare_share=0.9).verdict == "equivalent"


def test_bad_levels_and_inputs_are_rejected_with_their_values():
    with pytest.raises(ValueError, match=r"`0 < alpha < 1` must hold, but got \(self.alpha=1.5\)"):
        Level(alpha=1.5, m=1)
    with pytest.raises(ValueError, match=r"`m >= 1` and `looks >= 1`"):
        Level(alpha=0.05, m=0)
    level = Level(alpha=0.05, m=1)
    with pytest.raises(ValueError, match=r"finite \(n >= 2, k\) array"):
        decide_batch(np.array([[1.0], [np.nan]]), rope=0.5, level=level)
    with pytest.raises(ValueError, match=r"`rope >= 0` must hold and be finite, but got \(rope=-1\)"):
        decide_batch(np.ones((3, 1)), rope=-1, level=level)
    with pytest.raises(ValueError, match=r"`0 < rare_share < 1`"):
        decide_batch(np.ones((3, 1)), rope=0.5, level=level, rare_share=1.0)
    assert decide(np.array([2.0]), rope=0.5, level=level).verdict == "inconclusive"


# arm = baseline + 0.1 on every seed gives differences that differ in the last bits: still constant.
def test_differences_constant_up_to_rounding_count_as_constant():
    base = np.random.default_rng(1).uniform(0, 100, 12)
    d = (base + 0.1) - base
    assert np.ptp(d) > 0  # rounding, not data
    three = decide(d[:3], rope=0.5, level=Level(alpha=0.05, m=1))
    assert three.verdict == "inconclusive" and (three.ci_low, three.ci_high) == (-math.inf, math.inf) and three.sd == 0
    twelve = decide(d, rope=0.05, level=Level(alpha=0.05, m=1))
    assert twelve.verdict == "better" and twelve.ci_low == twelve.ci_high == twelve.mean


def test_thousands_of_pairs_decide_without_overflow():
    # 2 / 2^n and 1 / 2^n must not be formed as 2.0 ** n (OverflowError from n = 1024 pairs)
    rng = np.random.default_rng(0)
    assert decide(rng.normal(1.0, 1.0, 2500), rope=0.1, level=Level(0.05, 2)).verdict == "better"
    constant = decide(np.zeros(2500), rope=0.1, level=Level(0.05, 2))
    assert (constant.ci_low, constant.ci_high, constant.verdict) == (0.0, 0.0, "equivalent")
