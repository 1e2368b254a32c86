"""Load one study from the database into DataFrames: the report's only input (the schema is the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from armin.reporting import query

FAILURE_STATES = ("FAILED", "LOST", "CANCELLED")


@dataclass
class StudyData:
    name: str
    kind: str  # "search" | "ablation"
    goal: str
    status: str
    spec: dict  # the resolved spec (JSON)
    spec_text: str  # as written
    git_commit: str | None
    git_dirty: bool | None
    command: str | None
    versions: dict
    created_at: str
    updated_at: str
    attempts: pd.DataFrame  # every attempt (the `trials` view)
    final: pd.DataFrame  # the latest attempt of each (config, seed) slot
    curves: pd.DataFrame  # evaluation points of the latest attempts (long format)
    profile: pd.DataFrame  # the cost profile: one row per (arm, round), empty without one (query.cost_profile)

    @property
    def metric(self) -> str:
        return self.spec["objective"]["metric"]

    @property
    def higher_is_better(self) -> bool:
        return self.spec["objective"]["direction"] == "maximize"


def load_study(db: str | Path, name: str) -> StudyData:
    attempts = query.trials(db, name)  # raises a clear error for an unknown study
    row = query.sql(db, "SELECT kind, goal, status, spec_json, spec_text, git_commit, git_dirty, command, "
                        "versions_json, created_at, updated_at FROM armin_studies WHERE name = ?", (name,)).iloc[0]
    final = latest_attempts(attempts)
    curves = query.curves(db, name)
    curves = curves[curves["trial"].isin(final["trial"])]
    return StudyData(name=name, kind=row["kind"], goal=row["goal"], status=row["status"],
                     spec=json.loads(row["spec_json"]), spec_text=row["spec_text"], git_commit=row["git_commit"],
                     git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]), command=row["command"],
                     versions=json.loads(row["versions_json"] or "{}"), created_at=str(row["created_at"]),
                     updated_at=str(row["updated_at"]), attempts=attempts, final=final, curves=curves,
                     profile=query.cost_profile(db, name))


def latest_attempts(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per (config, seed) slot: its latest attempt (retries replace what they retry)."""
    if attempts.empty:
        return attempts
    return attempts.sort_values("attempt").groupby(["config_id", "seed"], as_index=False).tail(1) \
        .sort_values("trial").reset_index(drop=True)
