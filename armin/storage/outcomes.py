"""The schema's trial rows as outcomes of the statistics engine: one reading for the driver and the report.

A slot (arm, seed) is an outcome when its latest attempt is a result (complete, diverged) or
failed for good; an attempt the driver will run again (`TrialState.is_retried`) is not one yet,
and neither is a running or pruned one. Each outcome carries its seed's `replicate`, the position
in the spec's run order, which is what the engine pairs and orders by: a sequential design's
looks are at the first n seeds run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from armin.stats import STATE_OF_TRIAL
from armin.storage.models import TrialState

OUTCOME_COLUMNS = ["arm", "seed", "replicate", "value", "state", "db_state"]


def final_outcomes(latest: pd.DataFrame, seeds: Sequence[int], *, max_retries: int,
                   retry_failed: bool = True) -> pd.DataFrame:
    """Outcomes of the latest attempts: `latest` has arm, seed, state (a TrialState name), attempt,
    failure_reason and objective, one row per slot. Seeds outside `seeds` come after it, in seed order."""
    order = {int(seed): i for i, seed in enumerate(seeds)}
    rows = latest[latest["state"].isin(STATE_OF_TRIAL)]
    retried = np.array([TrialState[r.state].is_retried(int(r.attempt), r.failure_reason, max_retries=max_retries,
                                                       retry_failed=retry_failed)
                        for r in rows.itertuples()], dtype=bool)
    rows = rows[~retried] if len(rows) else rows
    seed = rows["seed"].astype(int)
    order |= {s: len(order) + i for i, s in enumerate(sorted(set(seed) - set(order)))}
    return pd.DataFrame({"arm": rows["arm"].astype(object), "seed": seed, "replicate": seed.map(order).astype(int),
                         "value": pd.to_numeric(rows["objective"], errors="coerce").astype(float),
                         "state": rows["state"].map(STATE_OF_TRIAL).astype(object),
                         "db_state": rows["state"].astype(object)}, columns=OUTCOME_COLUMNS).reset_index(drop=True)
