"""Per-arm summaries (`summarize_arms`): counts of every outcome, the t interval of the finite values."""

import math

import numpy as np
import pandas as pd
import pytest

from armin.stats import summarize_arms
from armin.stats.rule import t_interval


def test_summaries_count_every_outcome_and_use_the_t_interval_of_the_finite_values():
    df = pd.DataFrame({"arm": ["A"] * 6 + ["B"] * 2, "seed": [*range(6), 0, 1],
                       "value": [1.0, 2.0, 4.0, math.nan, 7.0, math.inf, 3.0, math.nan],
                       "state": ["complete", "complete", "complete", "diverged", "failed", "complete",
                                 "complete", "failed"]})
    out = summarize_arms(df).set_index("arm")
    a = out.loc["A"]
    assert (a.runs, a.complete, a.diverged, a.failed, a.nan) == (6, 4, 1, 1, 1)
    assert (a["mean"], a["median"]) == (7.0 / 3, 2.0)
    assert (a.ci_low, a.ci_high) == pytest.approx(t_interval(np.array([1.0, 2.0, 4.0]), 0.95))
    b = out.loc["B"]
    assert (b.runs, b.complete, b.failed, b["mean"]) == (2, 1, 1, 3.0) and math.isnan(b.ci_low) and math.isnan(b.sd)
