"""Statistics for ablation reports: per-arm summaries, paired-by-seed comparisons, factorial effects.

Seed s of every arm sees the same batches and initial weights, so arms are compared on per-seed
differences (resampling seeds), never as two independent samples. Every interval is a seeded
percentile bootstrap from `scipy.stats.bootstrap`, so a report is reproducible bit for bit.
Small n is reported, not hidden: too few values give NaN intervals and a note, never a crash.

Inputs must be finite: the caller separates diverged runs (a fact in the database) before calling.
Contract violations (NaN, misaligned arrays, a negative ROPE) raise `ValueError` showing the values.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

#: Bootstrap resamples per interval (10k: the CI endpoints move < ~1% of their width between seeds).
DEFAULT_N_BOOT = 10_000
#: Two-sided confidence level of every interval.
DEFAULT_CI = 0.95
#: Shapiro-Wilk level below which the paired differences are treated as non-normal.
NORMALITY_ALPHA = 0.05
#: Fewest pairs for which a paired t-test is flagged appropriate (Shapiro-Wilk is powerless below).
MIN_PAIRS_FOR_T = 5
#: Fewest pairs for a Hedges g (df = 1 makes the correction factor J exactly 0).
MIN_PAIRS_FOR_G = 3
#: Nonzero differences needed before an exact two-sided Wilcoxon p can fall below 0.05 (2 / 2**n).
MIN_NONZERO_FOR_WILCOXON_005 = 6
#: Largest number of seeds `seeds_to_settle` will propose (beyond it: None and a note).
SEEDS_TO_SETTLE_CAP = 1000
BOOTSTRAP_MIN_N = 10  # below this many seeds a percentile bootstrap undercovers (n=3: 10 distinct resamples); use t

Verdict = Literal["better", "worse", "equivalent", "inconclusive"]

# scipy >= 1.15 takes `rng`; older versions (pyproject allows >= 1.11) take `random_state`.
_RNG_KWARG = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class ArmSummary:
    """One arm's finite values over seeds."""

    n: int
    mean: float
    median: float
    std: float
    """Sample standard deviation (ddof=1); NaN for n < 2."""
    ci_low: float
    """CI of the mean (percentile bootstrap from BOOTSTRAP_MIN_N values, Student-t below); NaN for n < 2."""
    ci_high: float
    ci_level: float
    min: float
    max: float


@dataclass(frozen=True)
class Comparison:
    """An arm against the baseline on per-seed differences `arm - baseline` (see `compare_paired`)."""

    n_pairs: int
    """Seeds present (and finite) in both arms."""
    higher_is_better: bool
    rope: float
    """Half-width of the region of practical equivalence on the difference, in metric units."""
    ci_level: float
    mean_diff: float
    """Mean of `arm - baseline` (raw sign, not direction-adjusted)."""
    median_diff: float
    sd_diff: float
    """Sample standard deviation (ddof=1) of the differences."""
    ci_low: float
    """Paired CI of `mean_diff` over seeds: percentile bootstrap from BOOTSTRAP_MIN_N pairs, Student-t below."""
    ci_high: float
    wilcoxon_p: float
    """Two-sided Wilcoxon signed-rank p; 1.0 when every difference is 0, NaN when n_pairs = 0."""
    t_p: float
    """Two-sided paired t-test p (`ttest_rel`); 1.0 when every difference is 0, NaN when n_pairs < 2."""
    shapiro_p: float
    """Shapiro-Wilk p of the differences; NaN when n_pairs < 3 or the differences are constant."""
    t_appropriate: bool
    """Whether `t_p` may be quoted; see `compare_paired` for the rule."""
    hedges_g: float
    """Paired (d_z) standardized mean difference of `arm - baseline`, small-sample corrected."""
    p_better: float
    """Bootstrap probability of superiority: share of seed resamples with mean improvement > 0."""
    verdict: Verdict
    seeds_to_settle: int | None
    """Planning estimate of the total pairs that would settle an inconclusive comparison."""
    p_holm: float = math.nan
    """Holm-adjusted `wilcoxon_p` across the report's comparisons; set by `with_holm`."""
    notes: tuple[str, ...] = ()
    """Why a field is NaN/1.0/None, or a small-n caveat; for the report to print."""

    @property
    def sign(self) -> float:
        """+1 if higher is better, else -1: multiplies a difference into an improvement."""
        return 1.0 if self.higher_is_better else -1.0

    @property
    def mean_improvement(self) -> float:
        """`mean_diff` signed so positive means the arm is better."""
        return self.sign * self.mean_diff

    @property
    def improvement_ci(self) -> tuple[float, float]:
        """CI of `mean_improvement` (the one the verdict reads)."""
        low, high = sorted((self.sign * self.ci_low, self.sign * self.ci_high))
        return low, high


# ---------------------------------------------------------------- validation


def _finite_1d(values: object, name: str) -> np.ndarray:
    """The values as a float64 vector, or a ValueError naming the bad entries."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, but got shape {x.shape}.")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"`{name}` must be finite (separate diverged runs first), but got "
                         f"{x[bad].tolist()} at positions {bad.tolist()}.")
    return x


def _check_options(n_boot: int, ci: float) -> None:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"`0 < ci < 1` must hold, but got ({ci=}).")
    if n_boot < 1:
        raise ValueError(f"`n_boot >= 1` must hold, but got ({n_boot=}).")


# ---------------------------------------------------------------- bootstrap


def _bootstrap_mean(x: np.ndarray, n_boot: int, ci: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile-bootstrap CI of the mean over axis 0 (rows = seeds), and the resampled means.

    Percentile rather than BCa: it is defined for every n >= 2 (BCa's acceleration breaks on
    constant or two-point samples) and its resamples are exactly the ones `p_better` counts.
    Returns (low, high, distribution) with shapes x.shape[1:], x.shape[1:], x.shape[1:] + (n_boot,);
    NaN intervals and an empty distribution when fewer than 2 rows.
    """
    if x.shape[0] < 2:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan.copy(), np.empty(x.shape[1:] + (0,))
    res = stats.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=ci, method="percentile",
                          axis=0, **{_RNG_KWARG: np.random.default_rng(seed)})
    low, high = res.confidence_interval
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float), np.asarray(res.bootstrap_distribution)


def _t_interval(x: np.ndarray, ci: float) -> tuple[float, float]:
    """Student-t CI of the mean: exact under normality and honest (wide) at the small n of seed studies."""
    if x.size < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + ci) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def mean_ci(x: np.ndarray, n_boot: int, ci: float, seed: int) -> tuple[float, float, np.ndarray, str]:
    """(low, high, bootstrap distribution, method): percentile bootstrap from BOOTSTRAP_MIN_N seeds, else t.

    The bootstrap distribution is returned either way (p_better reads it); only the interval changes.
    """
    low, high, dist = _bootstrap_mean(x, n_boot, ci, seed)
    if x.size >= BOOTSTRAP_MIN_N:
        return float(low), float(high), dist, "bootstrap"
    return (*_t_interval(x, ci), dist, "t")


# ---------------------------------------------------------------- one arm


def summarize(values: object, *, n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI, seed: int = 0) -> ArmSummary:
    """Location, spread and a CI of the mean for one arm's finite per-seed values.

    The CI is a seeded percentile bootstrap from BOOTSTRAP_MIN_N values up and a Student-t interval
    below (see `mean_ci`). n = 0 gives NaN everywhere; n = 1 gives NaN std and CI.
    """
    _check_options(n_boot, ci)
    x = _finite_1d(values, "values")
    if x.size == 0:
        nan = math.nan
        return ArmSummary(n=0, mean=nan, median=nan, std=nan, ci_low=nan, ci_high=nan, ci_level=ci, min=nan, max=nan)
    low, high, _, _ = mean_ci(x, n_boot, ci, seed)
    return ArmSummary(n=x.size, mean=float(x.mean()), median=float(np.median(x)),
                      std=float(x.std(ddof=1)) if x.size > 1 else math.nan,
                      ci_low=float(low), ci_high=float(high), ci_level=ci,
                      min=float(x.min()), max=float(x.max()))


# ---------------------------------------------------------------- paired comparison


def _wilcoxon(d: np.ndarray) -> tuple[float, list[str]]:
    """Two-sided Wilcoxon signed-rank p, with the degenerate cases decided here, not by scipy."""
    nonzero = int(np.count_nonzero(d))
    if d.size == 0:
        return math.nan, ["wilcoxon_p is NaN: no pairs"]
    if nonzero == 0:
        return 1.0, ["wilcoxon_p = 1.0: every difference is exactly 0"]
    notes = []
    if nonzero < MIN_NONZERO_FOR_WILCOXON_005:
        notes.append(f"wilcoxon_p: only {nonzero} nonzero differences, so p cannot fall below 0.05")
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue), notes


def _ttest(arm: np.ndarray, baseline: np.ndarray, d: np.ndarray) -> tuple[float, list[str]]:
    """Two-sided paired t-test p (`ttest_rel`); the all-zero case is p = 1.0 instead of scipy's 0/0."""
    if d.size < 2:
        return math.nan, ["t_p is NaN: fewer than 2 pairs"]
    if not np.any(d):
        return 1.0, ["t_p = 1.0: every difference is exactly 0"]
    return float(stats.ttest_rel(arm, baseline, alternative="two-sided").pvalue), []


def _shapiro(d: np.ndarray) -> float:
    """Shapiro-Wilk p of the differences; NaN where the test is undefined (n < 3 or constant)."""
    if d.size < 3 or np.ptp(d) == 0:
        return math.nan
    return float(stats.shapiro(d).pvalue)


def hedges_g_paired(d: np.ndarray) -> float:
    """Paired standardized effect d_z = mean(d) / sd(d), times J = 1 - 3 / (4 df - 1), df = n - 1.

    This is the repeated-measures (d_z) version: it scales by the spread of the per-seed
    differences, not by the pooled spread of the two arms, so it grows with how consistent the
    pairing is. NaN for n < 3 (J = 0 at df = 1) and for constant differences (sd = 0).
    """
    n = d.size
    if n < MIN_PAIRS_FOR_G:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return math.nan
    df = n - 1
    return float((1.0 - 3.0 / (4.0 * df - 1.0)) * d.mean() / sd)


def verdict_from_ci(low: float, high: float, rope: float) -> Verdict:
    """Decide from the CI [low, high] of the improvement (positive = arm better) and the ROPE.

    Rule, checked in this order:
      equivalent   if -rope < low and high < rope (the whole CI inside the ROPE);
      better       if low > 0 (credibly positive; not entirely inside the ROPE, so possibly relevant);
      worse        if high < 0 (symmetric);
      inconclusive otherwise, including NaN bounds (too few seeds) and ROPE = 0 with a CI covering 0.
    "better" does not claim the gain exceeds the ROPE, only that it is positive and not shown negligible.
    """
    if -rope < low and high < rope:
        return "equivalent"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "inconclusive"


def seeds_to_settle(mean: float, sd: float, n_pairs: int, rope: float, *, ci: float = DEFAULT_CI,
                    cap: int = SEEDS_TO_SETTLE_CAP) -> tuple[int | None, str | None]:
    """Smallest total number of pairs n in (n_pairs, cap] whose t-based CI would settle the verdict.

    A planning estimate that assumes the observed mean and sd of the differences hold as seeds
    are added: the half-width h(n) = t_{(1+ci)/2, n-1} * sd / sqrt(n) must either exclude 0
    (h < |mean|: better/worse) or fit the CI inside the ROPE (|mean| + h < rope: equivalent).
    Returns (None, reason) when it cannot be estimated or exceeds `cap`.
    """
    if n_pairs < 2:
        return None, "seeds_to_settle is None: fewer than 2 pairs, so the spread is unknown"
    if mean == 0 and rope == 0:
        return None, "seeds_to_settle is None: observed effect is 0 and ROPE is 0; no n settles it"
    n = np.arange(n_pairs + 1, cap + 1)
    half = stats.t.ppf((1.0 + ci) / 2.0, n - 1) * sd / np.sqrt(n)
    settled = np.flatnonzero((half < abs(mean)) | (abs(mean) + half < rope))
    if settled.size == 0:
        return None, f"seeds_to_settle is None: more than {cap} seeds needed at the observed effect"
    return int(n[settled[0]]), None


def compare_paired(arm: object, baseline: object, *, higher_is_better: bool, rope: float,
                   n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI, seed: int = 0) -> Comparison:
    """Compare an arm with the baseline on seed-aligned values (entry i of both is seed i).

    The difference is `arm - baseline`; the improvement is the difference signed so positive
    means the arm is better. Intervals are over seeds (pairs), so between-seed variance shared
    by both arms cancels: a percentile bootstrap from BOOTSTRAP_MIN_N pairs, a Student-t interval
    below (`mean_ci`). `verdict` follows `verdict_from_ci` on the improvement CI.

    `t_appropriate` rule: n_pairs >= 5 and Shapiro-Wilk on the differences does not reject
    normality at 0.05 (shapiro_p >= 0.05; constant differences are never appropriate). At small
    n Shapiro-Wilk has little power, so this means "not contradicted", not "shown normal";
    quote `wilcoxon_p` otherwise. `p_better` counts resamples with mean improvement exactly 0
    as half (so all-zero differences give 0.5), and is NaN for n_pairs < 2.
    """
    _check_options(n_boot, ci)
    a, b = _finite_1d(arm, "arm"), _finite_1d(baseline, "baseline")
    if a.shape != b.shape:
        raise ValueError(f"`arm` and `baseline` must be aligned by seed, but got lengths ({a.size}, {b.size}).")
    if not rope >= 0:
        raise ValueError(f"`rope >= 0` must hold, but got ({rope=}).")
    d = a - b  # (n_pairs,)
    sign = 1.0 if higher_is_better else -1.0
    low, high, dist, method = mean_ci(d, n_boot, ci, seed)
    wilcoxon_p, notes = _wilcoxon(d)
    t_p, t_notes = _ttest(a, b, d)
    shapiro_p = _shapiro(d)
    verdict = verdict_from_ci(*sorted((sign * float(low), sign * float(high))), rope)
    mean = float(d.mean()) if d.size else math.nan
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    settle, settle_note = (None, None) if verdict != "inconclusive" else seeds_to_settle(
        mean, sd, d.size, rope, ci=ci)
    improvement = sign * dist  # (n_boot,)
    p_better = float(np.mean(improvement > 0) + 0.5 * np.mean(improvement == 0)) if dist.size else math.nan
    if d.size < 2:
        notes.append("CI, p_better are NaN: fewer than 2 pairs to resample")
    elif method == "t":
        notes.append(f"CI: Student-t over {d.size} pairs (a bootstrap undercovers below {BOOTSTRAP_MIN_N})")
    if d.size < MIN_PAIRS_FOR_G or (d.size and not np.ptp(d) > 0):
        notes.append("hedges_g is NaN: fewer than 3 pairs or constant differences")
    return Comparison(
        n_pairs=d.size, higher_is_better=higher_is_better, rope=float(rope), ci_level=ci,
        mean_diff=mean, median_diff=float(np.median(d)) if d.size else math.nan, sd_diff=sd,
        ci_low=float(low), ci_high=float(high), wilcoxon_p=wilcoxon_p, t_p=t_p, shapiro_p=shapiro_p,
        t_appropriate=bool(d.size >= MIN_PAIRS_FOR_T and shapiro_p >= NORMALITY_ALPHA),
        hedges_g=hedges_g_paired(d), p_better=p_better, verdict=verdict, seeds_to_settle=settle,
        notes=tuple(notes + t_notes + ([settle_note] if settle_note else [])))


def align_by_seed(df: pd.DataFrame, *, value_col: str, arm: str, baseline: str, arm_col: str = "arm",
                  seed_col: str = "seed") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arm values, baseline values, seeds) over the seeds present in both arms, sorted by seed.

    One row per (arm, seed) is required; values must be finite (diverged runs separated first).
    """
    rows = df[df[arm_col].isin([arm, baseline])]
    dup = rows.duplicated([arm_col, seed_col], keep=False)
    if dup.any():
        raise ValueError(f"one row per ({arm_col}, {seed_col}) is required, but got duplicates: "
                         f"{sorted(set(map(tuple, rows.loc[dup, [arm_col, seed_col]].values.tolist())))}.")
    _finite_1d(rows[value_col].to_numpy(dtype=float), value_col)
    wide = rows.pivot(index=seed_col, columns=arm_col, values=value_col).reindex(columns=[arm, baseline])
    wide = wide.dropna().sort_index()  # seeds missing in either arm
    return wide[arm].to_numpy(float), wide[baseline].to_numpy(float), wide.index.to_numpy()


# ---------------------------------------------------------------- multiple comparisons


def holm(p_values: object) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone in p, capped at 1).

    With the m finite p-values sorted ascending, p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    NaN p-values stay NaN and do not count toward m (a test that could not run is not a test).
    """
    p = np.asarray(p_values, dtype=np.float64)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], but got {p.tolist()}.")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(finite)
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def with_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with `p_holm` set from Holm over their `wilcoxon_p` (one report = one family)."""
    adjusted = holm([c.wilcoxon_p for c in comparisons])
    return [dataclasses.replace(c, p_holm=float(p)) for c, p in zip(comparisons, adjusted)]


# ---------------------------------------------------------------- factorial designs


def _cell_means(df: pd.DataFrame, factors: list[str], value: str, seed_col: str) -> tuple[np.ndarray, list[list]]:
    """Per-seed cell means as an array (n_complete_seeds, L_1, ..., L_k) and each factor's sorted levels.

    Only seeds with every cell of the full design are kept: a marginal mean over an incomplete
    seed would average over a different mix of the other factors and bias the effect.
    """
    missing = [c for c in [*factors, value, seed_col] if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are missing; got {list(df.columns)}.")
    _finite_1d(df[value].to_numpy(dtype=float), value)
    levels = [sorted(df[f].unique()) for f in factors]
    seeds = sorted(df[seed_col].unique())
    full = pd.MultiIndex.from_product([seeds, *levels], names=[seed_col, *factors])
    means = df.groupby([seed_col, *factors])[value].mean().reindex(full)
    cells = means.to_numpy().reshape(len(seeds), *map(len, levels))  # (n_seeds, L_1, ..., L_k)
    complete = ~np.isnan(cells.reshape(len(seeds), -1)).any(axis=1)
    return cells[complete], levels


def _effect_rows(per_seed: np.ndarray, n_boot: int, ci: float, seed: int) -> dict[str, np.ndarray]:
    """Mean over seeds and bootstrap CI (resampling seeds) of per-seed contrasts (n_seeds, n_contrasts)."""
    low, high, _ = _bootstrap_mean(per_seed, n_boot, ci, seed)
    effect = per_seed.mean(axis=0) if per_seed.shape[0] else np.full(per_seed.shape[1:], np.nan)
    return {"effect": effect, "ci_low": low, "ci_high": high, "n_seeds": np.full(per_seed.shape[1:], per_seed.shape[0])}


def main_effects(df: pd.DataFrame, factors: list[str], value: str, *, seed_col: str = "seed",
                 n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI, seed: int = 0) -> pd.DataFrame:
    """Main effect of every level of every factor: marginal mean minus grand mean, paired by seed.

    Per seed, cell means are averaged over the other factors (so replicates within a cell do not
    reweight it) and the seed's grand mean is subtracted; the effect is the mean of that over
    the seeds complete in every cell, with a bootstrap CI resampling those seeds. Columns:
    factor, level, effect, ci_low, ci_high, n_seeds.
    """
    _check_options(n_boot, ci)
    cells, levels = _cell_means(df, factors, value, seed_col)
    axes = tuple(range(1, cells.ndim))
    grand = cells.mean(axis=axes)  # (n_seeds,)
    frames = []
    for k, factor in enumerate(factors):
        marginal = cells.mean(axis=tuple(a for a in axes if a != k + 1))  # (n_seeds, L_k)
        rows = _effect_rows(marginal - grand[:, None], n_boot, ci, seed)
        frames.append(pd.DataFrame({"factor": factor, "level": levels[k], **rows}))
    return pd.concat(frames, ignore_index=True)


def _two_way(cells: np.ndarray, i: int, j: int) -> np.ndarray:
    """Per-seed interaction terms of factors i, j: cell - row - column + grand, shape (n_seeds, L_i, L_j)."""
    others = tuple(a for a in range(1, cells.ndim) if a not in (i + 1, j + 1))
    m = cells.mean(axis=others) if others else cells  # (n_seeds, L_i, L_j)
    return m - m.mean(axis=2, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean(axis=(1, 2), keepdims=True)


def interactions(df: pd.DataFrame, factors: list[str], value: str, *, seed_col: str = "seed",
                 n_boot: int = DEFAULT_N_BOOT, ci: float = DEFAULT_CI, seed: int = 0) -> pd.DataFrame:
    """Two-way interactions for every pair of factors, per seed then averaged, with a seed bootstrap CI.

    A 2x2 pair gives one row, kind "contrast": (a1b1 - a1b0) - (a0b1 - a0b0), where level 0 is
    the first in sorted order (level_a/level_b name a1, b1). A larger pair gives one row per
    cell, kind "cell": cell mean - row mean - column mean + grand mean. Other factors are
    averaged out per seed; seeds must be complete in every cell (n_seeds says how many were).
    Columns: factor_a, factor_b, kind, level_a, level_b, effect, ci_low, ci_high, n_seeds.
    """
    _check_options(n_boot, ci)
    cells, levels = _cell_means(df, factors, value, seed_col)
    frames = []
    for i, j in itertools.combinations(range(len(factors)), 2):
        terms = _two_way(cells, i, j)  # (n_seeds, L_i, L_j)
        if terms.shape[1:] == (2, 2):
            per_seed, kind = 4.0 * terms[:, 1:, 1], "contrast"  # 2x2: contrast = 4 * term(a1, b1), (n_seeds, 1)
            pairs = [(levels[i][1], levels[j][1])]
        else:
            per_seed, kind = terms.reshape(terms.shape[0], -1), "cell"  # (n_seeds, L_i * L_j)
            pairs = list(itertools.product(levels[i], levels[j]))
        rows = _effect_rows(per_seed, n_boot, ci, seed)
        frames.append(pd.DataFrame({"factor_a": factors[i], "factor_b": factors[j], "kind": kind,
                                    "level_a": [p[0] for p in pairs], "level_b": [p[1] for p in pairs], **rows}))
    columns = ["factor_a", "factor_b", "kind", "level_a", "level_b", "effect", "ci_low", "ci_high", "n_seeds"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


__all__ = [
    "DEFAULT_CI", "DEFAULT_N_BOOT", "MIN_PAIRS_FOR_T", "NORMALITY_ALPHA", "SEEDS_TO_SETTLE_CAP",
    "ArmSummary", "Comparison", "Verdict", "align_by_seed", "compare_paired", "hedges_g_paired", "holm",
    "interactions", "main_effects", "seeds_to_settle", "summarize", "verdict_from_ci", "with_holm",
]
