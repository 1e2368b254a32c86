"""The public verdict API: `compare_arms`, `plan_seeds`, `comparison_trace` on a table of runs.

The input is one row per run: `arm`, `seed`, `value` (float, NaN when there is none) and
`state` ("complete", "diverged" or "failed"). A run without a finite value (diverged, failed
for good, or complete with NaN) is an outcome, not missing data: it is scored as the worst
finite value of the whole table (the largest when minimizing), so it counts against its arm
and two such runs tie. Arms are paired on `seed`; a seed that one arm has not run yet is not a
pair. The rule itself lives in `armin.stats.rule`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from armin.stats.design import SequentialDesign
from armin.stats.rule import DEFAULT_ALPHA, DEFAULT_RARE_SHARE, Decision, Level, decide

Direction = Literal["minimize", "maximize"]
STATES = ("complete", "diverged", "failed")
COLUMNS = ("arm", "seed", "value", "state")
RESULT_COLUMNS = ("arm", "n_pairs", "mean_diff", "ci_low", "ci_high", "confidence", "p_value", "p_equivalence",
                  "verdict", "negligible", "n_diverged", "n_failed", "n_nan", "sd_diff", "p_t", "p_flip", "look",
                  "stop")


@dataclass(frozen=True)
class Scored:
    """The table as scores: `wide` is (seeds x arms) of scores with NaN where a run is absent."""

    wide: pd.DataFrame
    kind: pd.DataFrame  # (seeds x arms): "complete", "diverged", "failed", "nan" or NaN when absent
    worst: float
    sign: float  # +1 maximize, -1 minimize: improvement = sign * (arm - baseline)


def _check(df: pd.DataFrame, baseline: str, direction: str, rope: float, alpha: float, *,
           need_baseline: bool = True) -> None:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"`df` needs the columns {list(COLUMNS)}, but {missing} are missing (got {list(df.columns)}).")
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"`direction` must be 'minimize' or 'maximize', but got ({direction=}).")
    if not (isinstance(rope, numbers.Real) and not isinstance(rope, bool) and math.isfinite(rope) and rope >= 0):
        raise ValueError(f"`rope >= 0` must hold and be finite, but got ({rope=}).")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`0 < alpha < 1` must hold, but got ({alpha=}).")
    bad = sorted(set(df["state"]) - set(STATES))
    if bad:
        raise ValueError(f"`state` must be one of {list(STATES)}, but got {bad}.")
    dup = df.duplicated(["arm", "seed"], keep=False)
    if dup.any():
        raise ValueError(f"one row per (arm, seed) is required, but got duplicates: "
                         f"{sorted(set(map(tuple, df.loc[dup, ['arm', 'seed']].values.tolist())))}.")
    if need_baseline and len(df) and baseline not in set(df["arm"]):
        raise ValueError(f"the baseline {baseline!r} has no rows (arms: {sorted(set(df['arm']))}).")


def score_runs(value: np.ndarray, complete: np.ndarray, direction: Direction,
               axis: int | tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scoring rule on arrays: (scores, finite, worst). A run's score is its value when it
    completed with a finite one, else `worst`, the worst finite value of its table (the largest
    when minimizing; 0 in a table without any). The table is all of `value`, or with `axis` each
    slice along those axes (`worst` keeps them as length 1), so many tables score at once.
    """
    value = np.asarray(value, dtype=np.float64)
    finite = np.asarray(complete, dtype=bool) & np.isfinite(value)
    if direction == "minimize":
        worst = np.where(finite, value, -np.inf).max(axis=axis, keepdims=True, initial=-np.inf)
    else:
        worst = np.where(finite, value, np.inf).min(axis=axis, keepdims=True, initial=np.inf)
    worst = np.where(np.isfinite(worst), worst, 0.0)
    return np.where(finite, value, worst), finite, worst


def score(df: pd.DataFrame, direction: Direction) -> Scored:
    """Scores of every run: its value, or the worst finite value of the table when it has none."""
    value = pd.to_numeric(df["value"], errors="coerce").astype(float).to_numpy()
    scores, finite, worst = score_runs(value, (df["state"] == "complete").to_numpy(), direction)
    kind = np.where(finite, "complete", np.where(df["state"] == "complete", "nan", df["state"]))
    frame = df.assign(score=scores, kind=kind)
    wide = frame.pivot(index="seed", columns="arm", values="score").sort_index()
    kinds = frame.pivot(index="seed", columns="arm", values="kind").reindex_like(wide)
    return Scored(wide=wide, kind=kinds, worst=float(worst.item()), sign=1.0 if direction == "maximize" else -1.0)


def _pairs(scored: Scored, arm: str, baseline: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Improvements over the seeds both arms ran (sorted by seed), and the kinds of those runs."""
    both = scored.wide[[arm, baseline]].dropna()
    return scored.sign * (both[arm] - both[baseline]).to_numpy(float), scored.kind.loc[both.index, [arm, baseline]]


def _looks(d: np.ndarray, rope: float, level: Level, design: SequentialDesign | None,
           rare_share: float) -> tuple[list[tuple[int, Decision]], str]:
    """Decisions at every look up to the first that settles (fixed design: one look at all pairs), and why it stopped."""
    if design is None:
        return [(d.size, decide(d, rope=rope, level=level, rare_share=rare_share))], "fixed design"
    out = []
    for n in design.schedule:
        if n > d.size:
            break
        dec = decide(d[:n], rope=rope, level=level, rare_share=rare_share)
        out.append((n, dec))
        if dec.verdict != "inconclusive":
            return out, f"settled at {n} pairs"
    if not out:
        return out, f"first round not complete ({d.size} of {design.first_round} pairs)"
    if out[-1][0] >= design.max_seeds:
        return out, f"max_seeds ({design.max_seeds}) reached"
    return out, "unsettled: more seeds planned"


def _family(df: pd.DataFrame, baseline: str, arms: Iterable[str] | None) -> list[str]:
    """The non-baseline arms, in order of first appearance (then any named in `arms`)."""
    names = list(dict.fromkeys([*df["arm"].tolist(), *(arms or [])]))
    return [a for a in names if a != baseline]


def _design(sequential: bool, first_round: int, step: int, max_seeds: int) -> SequentialDesign | None:
    return SequentialDesign(first_round=first_round, step=step, max_seeds=max_seeds) if sequential else None


def _rows(df: pd.DataFrame, baseline: str, direction: Direction, rope: float, alpha: float,
          design: SequentialDesign | None, rare_share: float, arms: Iterable[str] | None):
    """(arm, pair kinds, [(look, Decision)], stop reason, Level, sign) for every comparison of the family."""
    _check(df, baseline, direction, rope, alpha)
    family = _family(df, baseline, arms)
    if not family:
        return []
    level = Level(alpha=alpha, m=len(family), looks=design.looks if design else 1)
    scored = score(df, direction) if len(df) else None
    sign = 1.0 if direction == "maximize" else -1.0
    out = []
    for arm in family:
        if scored is None or arm not in scored.wide.columns:
            d, kinds = np.empty(0), pd.DataFrame(columns=[arm, baseline])
        else:
            d, kinds = _pairs(scored, arm, baseline)
        looks, stop = _looks(d, rope, level, design, rare_share)
        out.append((arm, kinds, looks, stop, level, sign))
    return out


def _result_row(arm: str, kinds: pd.DataFrame, n: int, dec: Decision, stop: str, level: Level, sign: float) -> dict:
    used = kinds.iloc[:n]
    low, high = sorted((sign * dec.ci_low, sign * dec.ci_high)) if dec.n >= 2 else (math.nan, math.nan)
    return {"arm": arm, "n_pairs": dec.n, "mean_diff": sign * dec.mean, "ci_low": low, "ci_high": high,
            "confidence": 1.0 - level.each, "p_value": dec.p_value, "p_equivalence": dec.p_equivalence,
            "verdict": dec.verdict, "negligible": dec.negligible,
            "n_diverged": int((used == "diverged").to_numpy().sum()), "n_failed": int((used == "failed").to_numpy().sum()),
            "n_nan": int((used == "nan").to_numpy().sum()), "sd_diff": dec.sd, "p_t": dec.p_t, "p_flip": dec.p_flip,
            "look": n, "stop": stop}


def compare_arms(df: pd.DataFrame, *, baseline: str, direction: Direction, rope: float, alpha: float = DEFAULT_ALPHA,
                 sequential: bool = False, first_round: int = 10, step: int = 5, max_seeds: int = 30,
                 rare_share: float = DEFAULT_RARE_SHARE, arms: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per non-baseline arm: its paired comparison with `baseline` and the verdict.

    `mean_diff`, `ci_low`, `ci_high` are arm - baseline in the metric's units (raw sign), the
    interval at `confidence` = 1 - alpha / (m K) (simultaneous over the m comparisons and K looks);
    `p_value` tests "no difference" and `p_equivalence` "a difference of at least `rope`", both
    already adjusted for the family, so `verdict` is "better"/"worse" iff p_value < alpha and
    "equivalent" iff not that and p_equivalence < alpha (rule: `armin.stats.rule`). `n_diverged`,
    `n_failed`, `n_nan` count the runs among the pairs (both arms) that had no finite value and
    were scored as the worst one. With `sequential=True` the seeds come from a
    `SequentialDesign(first_round, step, max_seeds)`: each comparison is decided at its looks and
    stops at the first that settles (`look`, `stop` say which and why). `arms` names arms of the
    family with no rows yet (they count toward m).
    """
    rows = [_result_row(arm, kinds, *looks[-1], stop, level, sign) if looks else
            _result_row(arm, kinds, 0, decide(np.empty(0), rope=rope, level=level), stop, level, sign)
            for arm, kinds, looks, stop, level, sign in
            _rows(df, baseline, direction, rope, alpha, _design(sequential, first_round, step, max_seeds),
                  rare_share, arms)]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def comparison_trace(df: pd.DataFrame, *, baseline: str, direction: Direction, rope: float, alpha: float = DEFAULT_ALPHA,
                     first_round: int = 10, step: int = 5, max_seeds: int = 30,
                     rare_share: float = DEFAULT_RARE_SHARE, arms: Iterable[str] | None = None) -> pd.DataFrame:
    """Every look of a sequential design, per comparison, up to the one that settled it (same columns)."""
    design = SequentialDesign(first_round=first_round, step=step, max_seeds=max_seeds)
    rows = [_result_row(arm, kinds, n, dec, stop, level, sign)
            for arm, kinds, looks, stop, level, sign in _rows(df, baseline, direction, rope, alpha, design,
                                                               rare_share, arms)
            for n, dec in looks]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def plan_seeds(df: pd.DataFrame, *, baseline: str, direction: Direction, rope: float, alpha: float = DEFAULT_ALPHA,
               max_seeds: int = 30, first_round: int = 10, step: int = 5, rare_share: float = DEFAULT_RARE_SHARE,
               arms: Iterable[str] | None = None) -> dict[str, int]:
    """Seeds to add per arm for the next round of a sequential design; `{}` once nothing is left to run.

    An unsettled comparison asks for its next look (the first round while it is incomplete),
    for its arm and the baseline; a settled one, or one at `max_seeds`, asks for nothing. The
    counts are how many more runs each arm needs (its rows, finished in any state, count as run);
    the seeds to run are the next ones of the baseline's, so every new run has its pair. On an
    empty `df`, or one without baseline rows while `arms` declares the family (arms can finish before
    the baseline), the first round is named for the baseline and every arm in `arms` (less what each
    has run); without `arms`, a table without the baseline is an error, as in `compare_arms`.
    """
    design = SequentialDesign(first_round=first_round, step=step, max_seeds=max_seeds)
    ran = df.groupby("arm").size().to_dict() if len(df) else {}
    if baseline not in ran and (arms is not None or not ran):  # a declared family whose baseline has not run yet
        _check(df, baseline, direction, rope, alpha, need_baseline=False)
        first = {a: first_round - ran.get(a, 0) for a in [baseline, *_family(df, baseline, arms)]}
        return {a: n for a, n in first.items() if n > 0}
    need: dict[str, int] = {}
    for arm, _, looks, stop, _, _ in _rows(df, baseline, direction, rope, alpha, design, rare_share, arms):
        if looks and looks[-1][1].verdict != "inconclusive":
            continue
        current = looks[-1][0] if looks else 0
        target = design.first_round if not looks else design.next_after(current)
        if target is None:
            continue
        for who in (arm, baseline):
            more = target - ran.get(who, 0)
            if more > 0:
                need[who] = max(need.get(who, 0), more)
    return need


#: The database's final trial states as outcomes of this API (a LOST or CANCELLED slot whose
#: retries are spent failed for good; a slot still queued or running has no row at all).
STATE_OF_TRIAL = {"COMPLETE": "complete", "DIVERGED": "diverged", "FAILED": "failed", "LOST": "failed",
                  "CANCELLED": "failed"}
