"""Speed verdicts: an arm's time over the baseline's, from paired samples, by the report's comparison rule.

A sample is one paired unit: a cost-profile round (every arm ran the same batches, interleaved) or,
without a profile, a seed's trial. The rule is `armin.stats.compare_arms` on log time (minimize),
ROPE log 1.05, its own family of the non-baseline arms: the ratio is exp of the mean log difference
(a geometric mean ratio) with its simultaneous interval, and "same speed" means the whole interval
lies within 5% of the baseline and the engine's seed guard passes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from armin.stats import DEFAULT_ALPHA, DEFAULT_RARE_SHARE, Level, compare_arms

SPEED_ROPE = math.log(1.05)  # time ratios within 5% of the baseline count as "the same speed"
SPEED_VERDICTS = {"better": "faster", "worse": "slower", "equivalent": "same speed", "inconclusive": "inconclusive"}
SPEED_COLUMNS = ["arm", "speed_pairs", "speed_ratio", "speed_ratio_low", "speed_ratio_high", "speed_p_value",
                 "speed_verdict"]


def speed_level(arms: list[str], baseline: str) -> Level:
    """The speed family's level: the report's alpha over its m non-baseline arms, one look."""
    return Level(alpha=DEFAULT_ALPHA, m=max(1, len([a for a in arms if a != baseline])))


def compare_speed(samples: pd.DataFrame, baseline: str, arms: list[str]) -> pd.DataFrame:
    """One row per arm of `arms` (SPEED_COLUMNS; the baseline's row is empty): its time / the baseline's.

    `samples` has arm, pair (the paired unit) and seconds (finite, > 0; others are left out by the caller).
    """
    family = [a for a in arms if a != baseline]
    runs = pd.DataFrame({"arm": samples["arm"].astype(object), "seed": samples["pair"].astype(int),
                         "value": np.log(samples["seconds"].astype(float)), "state": "complete"})
    if baseline not in set(runs["arm"]):
        runs = runs.iloc[0:0]
    table = compare_arms(runs, baseline=baseline, direction="minimize", rope=SPEED_ROPE, alpha=DEFAULT_ALPHA,
                         rare_share=DEFAULT_RARE_SHARE, arms=family).set_index("arm")
    rows = []
    for arm in arms:
        row = {"arm": arm, "speed_pairs": 0, "speed_ratio": math.nan, "speed_ratio_low": math.nan,
               "speed_ratio_high": math.nan, "speed_p_value": math.nan, "speed_verdict": ""}
        if arm in table.index:
            c = table.loc[arm]
            row["speed_pairs"] = int(c["n_pairs"])
            if c["n_pairs"] >= 2:
                row |= {"speed_ratio": math.exp(c["mean_diff"]), "speed_ratio_low": math.exp(c["ci_low"]),
                        "speed_ratio_high": math.exp(c["ci_high"]), "speed_p_value": float(c["p_value"]),
                        "speed_verdict": SPEED_VERDICTS[c["verdict"]]}
        rows.append(row)
    return pd.DataFrame(rows, columns=SPEED_COLUMNS)
