"""Per-arm description: counts of every outcome and the mean of the finite values with a t interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


from armin.stats.rule import t_interval

SUMMARY_CONFIDENCE = 0.95


def summarize_arms(df: pd.DataFrame, *, arms: list[str] | None = None) -> pd.DataFrame:
    """One row per arm: runs, complete / diverged / failed / NaN counts, and over the finite values
    mean, median, sd and a 95% Student-t interval of the mean (this arm alone, not simultaneous).

    Runs without a finite value are counted here and scored as the worst outcome in comparisons.
    """
    rows = []
    for arm in arms if arms is not None else list(dict.fromkeys(df["arm"])):
        mine = df[df["arm"] == arm]
        value = pd.to_numeric(mine["value"], errors="coerce").astype(float)
        complete = mine["state"] == "complete"
        x = value[complete & np.isfinite(value)].to_numpy(float)
        low, high = t_interval(x, SUMMARY_CONFIDENCE)
        rows.append({"arm": arm, "runs": len(mine), "complete": int(complete.sum()),
                     "diverged": int((mine["state"] == "diverged").sum()),
                     "failed": int((mine["state"] == "failed").sum()),
                     "nan": int((complete & ~np.isfinite(value)).sum()),
                     "mean": float(x.mean()) if x.size else math.nan,
                     "median": float(np.median(x)) if x.size else math.nan,
                     "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


__all__ = ["SUMMARY_CONFIDENCE", "summarize_arms"]
