"""Load one study from the database into DataFrames: the report's only input (the schema is the contract)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from armin.reporting import query
from armin.spec import BaseSpec, stored_digest, stored_spec

FAILURE_STATES = ("FAILED", "LOST", "CANCELLED")


@dataclass
class StudyData:
    name: str
    kind: str  # "search" | "ablation"
    goal: str
    status: str
    spec: dict  # the resolved spec (JSON), as stored
    resolved: BaseSpec  # the same, rebuilt as its dataclass (SearchSpec or AblationSpec): what the tables read
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
    spec_versions: pd.DataFrame  # the spec history: version, created_at, forced, changes, spec_hash, contract

    def mixed_versions(self) -> pd.DataFrame:
        """The spec versions the final runs ran under, when their contracts differ (a `--force` between them).

        Empty when every final run ran under one contract: then the spec shown is the one they ran. The
        contract is each version's digest recomputed from its stored spec (`armin.spec.stored_digest`), not
        its stored `spec_hash`, which an older armin serialised differently.
        """
        used = self.spec_versions[self.spec_versions["version"].isin(self.final.get("spec_version", []))]
        return used if used["contract"].nunique() > 1 else used.iloc[0:0]
    profile: pd.DataFrame  # the cost profile: one row per (arm, round), empty without one (query.cost_profile)

    @property
    def metric(self) -> str:
        return self.resolved.objective.metric

    @property
    def higher_is_better(self) -> bool:
        return self.resolved.objective.direction == "maximize"


def load_study(db: str | Path, name: str) -> StudyData:
    with query.reading(db) as db:  # opened once, for every read below
        return _load(db, name)


def _load(db, name: str) -> StudyData:
    attempts = query.trials(db, name)  # raises a clear error for an unknown study
    row = query.sql(db, "SELECT kind, goal, status, spec_json, spec_text, git_commit, git_dirty, command, "
                        "versions_json, created_at, updated_at FROM armin_studies WHERE name = :name",
                    {"name": name}).iloc[0]
    final = latest_attempts(attempts)
    versions = query.sql(db, "SELECT v.version, v.created_at, v.forced, v.changes, v.spec_hash, v.command, "
                             "v.spec_json FROM armin_spec_versions v JOIN armin_studies s ON s.id = v.study_id "
                             "WHERE s.name = :name ORDER BY v.version", {"name": name})
    versions["contract"] = [stored_digest(row["kind"], j) for j in versions.pop("spec_json")]
    curves = query.curves(db, name)
    curves = curves[curves["trial"].isin(final["trial"])]
    return StudyData(name=name, kind=row["kind"], goal=row["goal"], status=row["status"],
                     spec=json.loads(row["spec_json"]),
                     resolved=stored_spec(row["kind"], row["spec_json"], f"study '{name}': the stored spec"),
                     spec_text=row["spec_text"], git_commit=row["git_commit"],
                     git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]), command=row["command"],
                     versions=json.loads(row["versions_json"] or "{}"), created_at=str(row["created_at"]),
                     updated_at=str(row["updated_at"]), attempts=attempts, final=final, curves=curves,
                     spec_versions=versions, profile=query.cost_profile(db, name))


def latest_attempts(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per (config, seed) slot: its latest attempt (retries replace what they retry)."""
    if attempts.empty:
        return attempts
    return attempts.sort_values("attempt").groupby(["config_id", "seed"], as_index=False).tail(1) \
        .sort_values("trial").reset_index(drop=True)
