"""Report statistics: paired-by-seed comparisons, verdict rule, Holm, factorial effects, small n."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from armin.reporting.stats import (
    SEEDS_TO_SETTLE_CAP,
    align_by_seed,
    compare_paired,
    hedges_g_paired,
    holm,
    interactions,
    main_effects,
    seeds_to_settle,
    summarize,
    verdict_from_ci,
    with_holm,
)

N_BOOT = 2000  # enough for stable 95% endpoints in tests, ~5x faster than the default


@pytest.fixture
def large_effect():
    """20 seeds; the arm is 0.5 above the baseline on every seed, give or take 0.05."""
    rng = np.random.default_rng(1)
    baseline = rng.normal(1.0, 0.1, 20)
    return baseline + 0.5 + rng.normal(0.0, 0.05, 20), baseline


@pytest.fixture
def no_effect():
    """20 seeds; the arm equals the baseline up to noise 1000x smaller than the seed spread."""
    rng = np.random.default_rng(2)
    baseline = rng.normal(1.0, 0.1, 20)
    return baseline + rng.normal(0.0, 0.001, 20), baseline


def compare(arm, baseline, **kw):
    kw = {"higher_is_better": False, "rope": 0.0, "n_boot": N_BOOT, **kw}
    return compare_paired(arm, baseline, **kw)


# ---------------------------------------------------------------- verdicts on known effects


# A higher metric is worse when lower is better: a +0.5 difference is "worse".
def test_large_effect_lower_is_better_is_worse(large_effect):
    c = compare(*large_effect, higher_is_better=False, rope=0.1)
    assert c.verdict == "worse"
    assert c.p_better == 0.0
    assert c.mean_improvement == pytest.approx(-c.mean_diff)


# The same data with higher-is-better flips the verdict, p_better, and nothing else.
def test_large_effect_higher_is_better_is_better(large_effect):
    lower, higher = compare(*large_effect, higher_is_better=False), compare(*large_effect, higher_is_better=True)
    assert higher.verdict == "better"
    assert higher.p_better == 1.0
    assert (higher.ci_low, higher.ci_high, higher.hedges_g) == (lower.ci_low, lower.ci_high, lower.hedges_g)
    assert higher.improvement_ci == pytest.approx((-lower.improvement_ci[1], -lower.improvement_ci[0]))


# The large effect is detected with the right size and sign on the raw difference.
def test_large_effect_statistics(large_effect):
    c = compare(*large_effect)
    assert c.n_pairs == 20
    assert c.wilcoxon_p < 1e-3 and c.t_p < 1e-3
    assert 0 < c.ci_low < 0.5 < c.ci_high
    assert c.hedges_g > 5  # d_z ~ 0.5 / 0.05 = 10, positive because arm - baseline > 0
    assert c.seeds_to_settle is None  # already settled


def test_no_effect_within_rope_is_equivalent(no_effect):
    assert compare(*no_effect, rope=0.1).verdict == "equivalent"


# A CI inside the ROPE wins over a CI above 0: credibly positive but negligible is "equivalent".
def test_positive_but_negligible_is_equivalent():
    rng = np.random.default_rng(3)
    baseline = rng.normal(1.0, 0.1, 20)
    c = compare(baseline + 0.01 + rng.normal(0, 0.001, 20), baseline, higher_is_better=True, rope=0.1)
    assert c.improvement_ci[0] > 0
    assert c.verdict == "equivalent"


# With ROPE 0 and few seeds a tiny effect is inconclusive, and more seeds would settle it.
def test_no_rope_few_seeds_is_inconclusive_with_finite_seeds_to_settle():
    baseline = np.random.default_rng(4).normal(1.0, 0.1, 4)
    c = compare(baseline + np.array([0.03, -0.01, 0.02, -0.005]), baseline, rope=0.0)
    assert c.verdict == "inconclusive"
    assert c.seeds_to_settle is not None and c.n_pairs < c.seeds_to_settle <= SEEDS_TO_SETTLE_CAP


# ---------------------------------------------------------------- the pairing is real


# Seeds differ by ~10, arms by a consistent 0.3: only a paired analysis sees the difference.
@pytest.fixture
def seed_dominated():
    rng = np.random.default_rng(5)
    baseline = 1.0 + rng.normal(0, 10.0, 10)
    return baseline + 0.3 + rng.normal(0, 0.05, 10), baseline


def test_paired_ci_excludes_zero_where_unpaired_test_sees_nothing(seed_dominated):
    arm, baseline = seed_dominated
    assert compare(arm, baseline, higher_is_better=True).ci_low > 0
    assert sps.ttest_ind(arm, baseline).pvalue > 0.5


# Breaking the pairing (shuffling seeds of one arm) destroys the evidence: the pairing is used.
def test_shuffled_pairing_loses_the_effect(seed_dominated):
    arm, baseline = seed_dominated
    shuffled = baseline[np.random.default_rng(6).permutation(baseline.size)]
    assert compare(arm, shuffled, higher_is_better=True).verdict == "inconclusive"


# ---------------------------------------------------------------- verdict rule


@pytest.mark.parametrize(("low", "high", "rope", "expected"), [
    (-0.05, 0.05, 0.1, "equivalent"),     # inside the ROPE
    (0.01, 0.05, 0.1, "equivalent"),      # above 0 but inside the ROPE
    (0.01, 0.5, 0.1, "better"),           # above 0, reaching past +rope
    (0.2, 0.5, 0.1, "better"),            # entirely above +rope
    (-0.5, -0.01, 0.1, "worse"),
    (-0.05, 0.5, 0.1, "inconclusive"),    # covers 0 and leaves the ROPE
    (-0.1, 0.05, 0.1, "inconclusive"),    # touches -rope: not strictly inside
    (-0.01, 0.01, 0.0, "inconclusive"),   # ROPE 0 can never be "equivalent"
    (0.01, 0.02, 0.0, "better"),
    (math.nan, math.nan, 0.1, "inconclusive"),
])
def test_verdict_rule(low, high, rope, expected):
    assert verdict_from_ci(low, high, rope) == expected


# ---------------------------------------------------------------- seeds_to_settle


# Hand-computed: t_{.975,5} / sqrt(6) = 1.050 > 1 but t_{.975,6} / sqrt(7) = 0.925 < 1.
def test_seeds_to_settle_to_exclude_zero():
    assert seeds_to_settle(1.0, 1.0, 3, 0.0) == (7, None)


# Hand-computed: |0| + t_{.975,16} / sqrt(17) = 0.514 >= 0.5 but t_{.975,17} / sqrt(18) = 0.497 < 0.5.
def test_seeds_to_settle_to_fit_in_rope():
    assert seeds_to_settle(0.0, 1.0, 3, 0.5) == (18, None)


def test_seeds_to_settle_zero_effect_zero_rope_is_none_with_note():
    n, note = seeds_to_settle(0.0, 1.0, 10, 0.0)
    assert n is None and "ROPE is 0" in note


def test_seeds_to_settle_beyond_cap_is_none_with_note():
    n, note = seeds_to_settle(1e-4, 1.0, 10, 0.0)
    assert n is None and str(SEEDS_TO_SETTLE_CAP) in note


# ---------------------------------------------------------------- tests and effect size


def test_hedges_g_matches_hand_computation():
    d = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    j = 1 - 3 / (4 * 4 - 1)  # df = 4
    assert hedges_g_paired(d) == pytest.approx(j * statistics.mean(d) / statistics.stdev(d))


def test_t_p_matches_one_sample_t_on_differences(large_effect):
    arm, baseline = large_effect
    arm = arm - 0.49  # keep p away from 0 so the comparison is informative
    assert compare(arm, baseline).t_p == pytest.approx(sps.ttest_1samp(arm - baseline, 0.0).pvalue)


# Zero differences are discarded (zero_method="wilcox"): adding ties at 0 leaves p unchanged.
def test_wilcoxon_discards_zero_differences():
    d = np.array([0.3, -0.3, -0.1, 0.5, 0.5, 0.2, 0.4, 0.6])  # ties among nonzero differences too
    base = np.zeros(d.size)
    with_zeros = compare(np.r_[d, 0.0, 0.0, 0.0], np.r_[base, 0.0, 0.0, 0.0])  # "pratt" would give 0.086, not 0.0625
    assert with_zeros.wilcoxon_p == pytest.approx(compare(d, base).wilcoxon_p)
    assert 0 < with_zeros.wilcoxon_p < 1


def test_t_appropriate_needs_five_pairs():
    d = np.array([0.1, 0.2, 0.15, 0.12])
    assert not compare(d, np.zeros(4)).t_appropriate


def test_t_appropriate_for_normal_differences(large_effect):
    c = compare(*large_effect)
    assert c.shapiro_p >= 0.05 and c.t_appropriate


def test_t_not_appropriate_for_skewed_differences():
    d = np.random.default_rng(7).exponential(1.0, 30) ** 3
    c = compare(d, np.zeros(30))
    assert c.shapiro_p < 0.05 and not c.t_appropriate


# ---------------------------------------------------------------- p_better and determinism


# Resamples whose mean improvement is exactly 0 count half.
def test_p_better_counts_zero_improvement_as_half():
    assert compare(np.ones(5), np.ones(5)).p_better == 0.5


def test_compare_is_deterministic_per_seed(seed_dominated):
    a, b, c = compare(*seed_dominated, seed=3), compare(*seed_dominated, seed=3), compare(*seed_dominated, seed=4)
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


# ---------------------------------------------------------------- small n and degenerate input


def test_one_pair_gives_nan_intervals_and_inconclusive():
    c = compare([1.2], [1.0], rope=0.1)
    assert c.n_pairs == 1 and math.isnan(c.ci_low) and math.isnan(c.p_better) and math.isnan(c.t_p)
    assert c.verdict == "inconclusive" and c.seeds_to_settle is None
    assert any("fewer than 2 pairs" in n for n in c.notes)


def test_two_pairs_run_but_have_no_effect_size():
    c = compare([1.2, 1.5], [1.0, 1.1])
    assert not math.isnan(c.ci_low) and not math.isnan(c.t_p)
    assert math.isnan(c.hedges_g) and not c.t_appropriate


def test_no_pairs_does_not_crash():
    c = compare([], [])
    assert c.n_pairs == 0 and math.isnan(c.mean_diff) and math.isnan(c.wilcoxon_p)
    assert c.verdict == "inconclusive"


def test_all_zero_differences():
    c = compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], rope=0.1)
    assert (c.wilcoxon_p, c.t_p, c.ci_low, c.ci_high) == (1.0, 1.0, 0.0, 0.0)
    assert math.isnan(c.hedges_g)
    assert c.verdict == "equivalent"


def test_all_zero_differences_with_zero_rope_cannot_be_settled():
    c = compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], rope=0.0)
    assert c.verdict == "inconclusive" and c.seeds_to_settle is None
    assert any("ROPE is 0" in n for n in c.notes)


def test_few_nonzero_differences_note_wilcoxon_floor():
    c = compare([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert c.wilcoxon_p >= 0.05 and any("cannot fall below 0.05" in n for n in c.notes)


@pytest.mark.parametrize(("arm", "baseline", "rope", "match"), [
    ([1.0, math.nan], [1.0, 1.0], 0.1, "finite"),
    ([1.0, 2.0], [1.0], 0.1, "aligned"),
    ([1.0, 2.0], [1.0, 2.0], -0.1, "rope >= 0"),
])
def test_compare_rejects_bad_input(arm, baseline, rope, match):
    with pytest.raises(ValueError, match=match):
        compare(arm, baseline, rope=rope)


# ---------------------------------------------------------------- summarize


def test_summarize_fields():
    s = summarize([3.0, 1.0, 2.0, 10.0], n_boot=N_BOOT)
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 4.0, 2.5, 1.0, 10.0)
    assert s.std == pytest.approx(statistics.stdev([3.0, 1.0, 2.0, 10.0]))
    assert s.ci_low <= s.mean <= s.ci_high


def test_summarize_ci_narrows_with_n():
    rng = np.random.default_rng(8)
    small, large = summarize(rng.normal(0, 1, 10), n_boot=N_BOOT), summarize(rng.normal(0, 1, 400), n_boot=N_BOOT)
    assert large.ci_high - large.ci_low < (small.ci_high - small.ci_low) / 3


def test_summarize_is_deterministic_per_seed():
    x = np.random.default_rng(9).normal(0, 1, 15)
    assert summarize(x, n_boot=N_BOOT, seed=1) == summarize(x, n_boot=N_BOOT, seed=1)
    assert summarize(x, n_boot=N_BOOT, seed=1).ci_low != summarize(x, n_boot=N_BOOT, seed=2).ci_low


def test_summarize_small_n():
    one, empty = summarize([2.0]), summarize([])
    assert (one.n, one.mean) == (1, 2.0) and math.isnan(one.std) and math.isnan(one.ci_low)
    assert empty.n == 0 and math.isnan(empty.mean)


def test_summarize_rejects_nan():
    with pytest.raises(ValueError, match="diverged"):
        summarize([1.0, math.nan])


# ---------------------------------------------------------------- Holm


def test_holm_hand_computed():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


# NaN stays NaN and does not count toward m (m = 4 here, not 5).
def test_holm_with_nan():
    np.testing.assert_allclose(holm([0.01, math.nan, 0.04, 0.03, 0.005]), [0.03, math.nan, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_is_monotone():
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.04, 0.03]), [0.06, 0.06])


def test_holm_degenerate_and_invalid():
    assert holm([]).size == 0 and np.isnan(holm([math.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_with_holm_fills_p_holm_from_wilcoxon(large_effect, no_effect):
    comps = with_holm([compare(*large_effect), compare(*no_effect), compare([1.0], [1.0])])
    np.testing.assert_allclose([c.p_holm for c in comps], holm([c.wilcoxon_p for c in comps]))


# ---------------------------------------------------------------- align_by_seed


def test_align_by_seed_drops_unpaired_seeds_and_sorts():
    df = pd.DataFrame({"arm": ["a", "a", "a", "b", "b", "b"], "seed": [2, 0, 1, 0, 2, 3],
                       "loss": [1.2, 1.0, 1.1, 2.0, 2.2, 2.3]})
    a, b, seeds = align_by_seed(df, value_col="loss", arm="a", baseline="b")
    np.testing.assert_array_equal(seeds, [0, 2])
    np.testing.assert_array_equal(a, [1.0, 1.2])
    np.testing.assert_array_equal(b, [2.0, 2.2])


def test_align_by_seed_rejects_duplicates_and_nan():
    dup = pd.DataFrame({"arm": ["a", "a", "b"], "seed": [0, 0, 0], "loss": [1.0, 1.1, 2.0]})
    with pytest.raises(ValueError, match="duplicates"):
        align_by_seed(dup, value_col="loss", arm="a", baseline="b")
    nan = pd.DataFrame({"arm": ["a", "b"], "seed": [0, 0], "loss": [math.nan, 2.0]})
    with pytest.raises(ValueError, match="finite"):
        align_by_seed(nan, value_col="loss", arm="a", baseline="b")


# ---------------------------------------------------------------- factorial designs


def factorial(effect, n_seeds=12, noise=0.01, rng_seed=10, **levels):
    """One row per (seed, cell): effect(**cell) + a large per-seed offset + small noise."""
    rng = np.random.default_rng(rng_seed)
    grid = pd.MultiIndex.from_product([range(n_seeds), *levels.values()], names=["seed", *levels]).to_frame(index=False)
    offset = rng.normal(0.0, 5.0, n_seeds)[grid["seed"]]
    grid["value"] = [effect(**row) for row in grid[list(levels)].to_dict("records")] + offset
    grid["value"] += rng.normal(0.0, noise, len(grid))
    return grid


@pytest.fixture
def design_2x2():
    """value = A + 2B + 3AB: cell means 0, 1, 2, 6; grand mean 2.25."""
    return factorial(lambda A, B: A + 2 * B + 3 * A * B, A=[0, 1], B=[0, 1])


# Marginal means 1, 3.5 (A) and 0.5, 4 (B) minus the grand mean 2.25, despite seed offsets ~5.
def test_main_effects_recovered(design_2x2):
    me = main_effects(design_2x2, ["A", "B"], "value", n_boot=N_BOOT).set_index(["factor", "level"])
    expected = {("A", 0): -1.25, ("A", 1): 1.25, ("B", 0): -1.75, ("B", 1): 1.75}
    for key, truth in expected.items():
        row = me.loc[key]
        assert row["effect"] == pytest.approx(truth, abs=0.02)
        assert row["ci_low"] <= truth <= row["ci_high"] and row["ci_high"] - row["ci_low"] < 0.05
        assert row["n_seeds"] == 12


# (a1b1 - a1b0) - (a0b1 - a0b0) = (6 - 1) - (2 - 0) = 3.
def test_interaction_contrast_recovered(design_2x2):
    ia = interactions(design_2x2, ["A", "B"], "value", n_boot=N_BOOT)
    assert len(ia) == 1
    row = ia.iloc[0]
    assert (row["kind"], row["level_a"], row["level_b"]) == ("contrast", 1, 1)
    assert row["effect"] == pytest.approx(3.0, abs=0.03) and row["ci_low"] <= 3.0 <= row["ci_high"]


def test_additive_design_has_no_interaction():
    df = factorial(lambda A, B: A + 2 * B, noise=0.1, A=[0, 1], B=[0, 1])
    row = interactions(df, ["A", "B"], "value", n_boot=N_BOOT).iloc[0]
    assert abs(row["effect"]) < 0.1 and row["ci_low"] < 0 < row["ci_high"]


# Larger designs report cell - row - column + grand per cell; a third factor is averaged out.
def test_interaction_cells_for_3x2_with_third_factor():
    table = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 9.0]])
    df = factorial(lambda A, B, C: table[A, B] + 5 * C, noise=0.0, A=[0, 1, 2], B=[0, 1], C=[0, 1])
    ia = interactions(df, ["A", "B", "C"], "value", n_boot=N_BOOT).set_index(["factor_a", "factor_b"])
    ab = ia.loc[("A", "B")]
    expected = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    assert (ab["kind"] == "cell").all() and len(ab) == 6
    np.testing.assert_allclose(ab["effect"].to_numpy(), expected.ravel(), atol=1e-9)
    np.testing.assert_allclose(ia.loc[("A", "C"), "effect"].to_numpy(), 0.0, atol=1e-9)  # additive in C
    assert ia.loc[("B", "C"), "kind"] == "contrast"


# A seed missing one cell is left out of every effect, and n_seeds says so.
def test_incomplete_seed_is_dropped(design_2x2):
    df = design_2x2.drop(design_2x2.index[(design_2x2["seed"] == 0) & (design_2x2["A"] == 1) & (design_2x2["B"] == 1)])
    assert (main_effects(df, ["A", "B"], "value", n_boot=N_BOOT)["n_seeds"] == 11).all()
    assert (interactions(df, ["A", "B"], "value", n_boot=N_BOOT)["n_seeds"] == 11).all()


def test_factorial_rejects_missing_columns(design_2x2):
    with pytest.raises(ValueError, match="missing"):
        main_effects(design_2x2, ["A", "D"], "value")


# ---------------------------------------------------------------- small n: t instead of bootstrap


def test_small_n_uses_the_wider_t_interval_not_an_undercovering_bootstrap():
    from scipy import stats as sps

    from armin.reporting.stats import BOOTSTRAP_MIN_N, compare_paired

    baseline = np.array([1.0, 2.0, 3.0])
    arm = baseline + np.array([0.10, 0.30, 0.05])  # consistent but tiny sample: 3 pairs
    c = compare_paired(arm, baseline, higher_is_better=True, rope=0.0, n_boot=2000)
    d = arm - baseline
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.ci_low < 0 < c.ci_high and c.verdict == "inconclusive"  # a 3-seed bootstrap would say "better"
    boot = sps.bootstrap((d,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(0))
    assert boot.confidence_interval.low > 0
    assert any("Student-t" in n for n in c.notes)
    assert BOOTSTRAP_MIN_N == 10


def test_from_ten_pairs_the_interval_is_the_percentile_bootstrap():
    from scipy import stats as sps

    from armin.reporting.stats import compare_paired, summarize

    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 12)
    arm = base + rng.normal(0.5, 0.2, 12)
    c = compare_paired(arm, base, higher_is_better=True, rope=0.1, n_boot=2000, seed=7)
    boot = sps.bootstrap((arm - base,), np.mean, n_resamples=2000, method="percentile",
                         rng=np.random.default_rng(7))
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(boot.confidence_interval))
    s3 = summarize([1.0, 2.0, 4.0], n_boot=2000)
    half = sps.t.ppf(0.975, 2) * np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3)
    assert (s3.ci_low, s3.ci_high) == pytest.approx((7 / 3 - half, 7 / 3 + half))
