"""The schema's trial rows as outcomes of the statistics engine: one reading for the driver and the report.

A slot (arm, seed) is an outcome when its latest attempt is a result (complete, diverged) or
failed for good; an attempt the driver will run again (`armin.storage.failures.retry_due`, which
reads the slot's whole history) is not one yet, and neither is a running or pruned one. Each outcome carries its seed's `replicate`, the position
in the spec's run order, which is what the engine pairs and orders by: a sequential design's
looks are at the first n seeds run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from armin.stats import STATE_OF_TRIAL
from armin.storage.failures import histories, retry_due
from armin.storage.models import TrialState

OUTCOME_COLUMNS = ["arm", "seed", "replicate", "value", "state", "db_state"]


def final_outcomes(attempts: pd.DataFrame, seeds: Sequence[int], *, max_retries: int) -> pd.DataFrame:
    """Outcomes of the slots' latest attempts: `attempts` has arm, seed, state (a TrialState name),
    failure_reason and objective, every attempt of each slot in run order. Seeds outside `seeds`
    come after it, in seed order."""
    order = {int(seed): i for i, seed in enumerate(seeds)}
    slots = histories(((r.arm, int(r.seed)), TrialState[r.state], r.failure_reason if isinstance(r.failure_reason, str)
                       else None) for r in attempts.itertuples())
    latest = attempts.drop_duplicates(["arm", "seed"], keep="last")
    due = np.array([retry_due(slots[(r.arm, int(r.seed))], max_retries=max_retries)
                    for r in latest.itertuples()], dtype=bool)
    rows = latest[latest["state"].isin(STATE_OF_TRIAL).to_numpy() & ~due] if len(latest) else latest
    seed = rows["seed"].astype(int)
    order |= {s: len(order) + i for i, s in enumerate(sorted(set(seed) - set(order)))}
    return pd.DataFrame({"arm": rows["arm"].astype(object), "seed": seed, "replicate": seed.map(order).astype(int),
                         "value": pd.to_numeric(rows["objective"], errors="coerce").astype(float),
                         "state": rows["state"].map(STATE_OF_TRIAL).astype(object),
                         "db_state": rows["state"].astype(object)}, columns=OUTCOME_COLUMNS).reset_index(drop=True)
