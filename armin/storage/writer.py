"""The one writer: every row the driver writes (and the benchmark synthesiser fakes) is built here.

The driver and `armin bench report` both go through these functions, so a synthetic database
means what a real one means: the same columns filled, the same encodings (`encode_value`), the
same typed component columns read from the run's model. Functions take the caller's session:
the caller decides what commits together. Row builders (`*_row`) return plain column mappings,
for the ORM and for bulk inserts alike.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from armin.storage.models import (LOST_BY_DRIVER, Cost, Metric, SpecVersion, Study, Trial, TrialState, component_values,
                                  encode_value, utcnow)


def new_study(s: Session, *, name: str, kind: str, goal: str, spec_text: str, spec_json: str, spec_hash: str,
              command: str, versions: dict, git_commit: str | None = None, git_dirty: bool | None = None,
              status: str = "running") -> Study:
    """The study row (flushed: its id is set)."""
    now = utcnow()
    row = Study(name=name, kind=kind, goal=goal, spec_text=spec_text, spec_json=spec_json, spec_hash=spec_hash,
                optuna_study_name=name, status=status, created_at=now, updated_at=now, git_commit=git_commit,
                git_dirty=git_dirty, command=command, versions_json=json.dumps(versions))
    s.add(row)
    s.flush()
    return row


def add_spec_version(study: Study, *, forced: bool, changes: str | None, command: str) -> int:
    """Append the study row's current spec as its next version; returns the version number."""
    number = max((v.version for v in study.spec_versions), default=0) + 1
    study.spec_versions.append(SpecVersion(version=number, spec_text=study.spec_text, spec_json=study.spec_json,
                                           spec_hash=study.spec_hash, forced=forced, changes=changes,
                                           command=command, created_at=utcnow()))
    return number


def set_status(s: Session, study_id: int, status: str) -> None:
    row = s.get(Study, study_id)
    row.status, row.updated_at = status, utcnow()


def trial_row(*, study_id: int, number: int, config_id: int, replicate: int, seed: int, params: dict,
              run_mapping: dict, model: Any, arm: str | None = None, attempt: int = 1, retry_of_id: int | None = None,
              spec_version: int = 1, optuna_trial_id: int | None = None) -> dict:
    """A new attempt's row, RUNNING from now."""
    return dict(study_id=study_id, number=number, optuna_trial_id=optuna_trial_id, config_id=config_id,
                replicate=replicate, seed=seed, attempt=attempt, retry_of_id=retry_of_id, state=TrialState.RUNNING,
                arm=arm, spec_version=spec_version, params_json=json.dumps(params, sort_keys=True),
                config_json=json.dumps(run_mapping, sort_keys=True), started_at=utcnow(), **component_values(model))


def start_attempt(s: Session, **fields: Any) -> int:
    """Insert an attempt (`trial_row`'s fields but `number`: the study's next) and return its row id."""
    last = (s.query(Trial.number).filter_by(study_id=fields["study_id"]).order_by(Trial.number.desc())
            .limit(1).scalar())
    row = Trial(**trial_row(number=0 if last is None else last + 1, **fields))
    s.add(row)
    s.flush()
    return row.id


def _update(s: Session, trial_id: int, fields: dict) -> Trial:
    row = s.get(Trial, trial_id)
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def worker_fields(*, host: str, device: str) -> dict:
    """Where an attempt runs, from its worker's "started" event."""
    return dict(worker_host=host, device=device)


def record_worker(s: Session, trial_id: int, *, host: str, device: str) -> None:
    _update(s, trial_id, worker_fields(host=host, device=device))


def metric_rows(trial_id: int, step: int, metrics: dict) -> list[dict]:
    """One evaluation's metrics (the `step` key is the step, not a metric)."""
    rows = []
    for name, value in metrics.items():
        if name != "step":
            v, kind = encode_value(value)
            rows.append(dict(trial_id=trial_id, step=step, name=name, value=v, value_kind=kind))
    return rows


def record_eval(s: Session, trial_id: int, step: int, metrics: dict) -> None:
    s.add_all(Metric(**row) for row in metric_rows(trial_id, step, metrics))


def cost_row(result: Any, trial_id: int) -> dict:
    """The cost columns of a RunResult (or its dict, as workers send it): `Cost.from_run_result`'s reading."""
    cost = Cost.from_run_result(result, trial_id=trial_id)
    return {c.key: getattr(cost, c.key) for c in Cost.__table__.columns if c.key != "id"}


def result_fields(result: dict) -> dict:
    """What a result (a RunResult's dict) adds to its trial row: where its data came from."""
    return dict(data_source=result.get("data_source"))


def record_result(s: Session, trial_id: int, result: dict) -> None:
    """What a result carries beyond the outcome: where its data came from, and its costs."""
    _update(s, trial_id, result_fields(result))
    s.add(Cost(**cost_row(result, trial_id)))


def outcome_fields(state: TrialState, *, value: float | None = None, reason: str | None = None, tb: str | None = None,
                   diverged_step: int | None = None) -> dict:
    """How an attempt ended: its state, objective (encoded), reason, traceback and divergence step."""
    v, kind = encode_value(value)
    return dict(state=state, finished_at=utcnow(), value=v, value_kind=kind, failure_reason=reason, traceback=tb,
                diverged_step=diverged_step)


def finish_attempt(s: Session, trial_id: int, state: TrialState, **outcome: Any) -> Trial:
    """Record an attempt's end (`outcome_fields`' keywords)."""
    row = _update(s, trial_id, outcome_fields(state, **outcome))
    s.flush()
    return row


def mark_lost_by_driver(rows: list[Trial]) -> None:
    """Attempts a dead driver left RUNNING: lost to their environment (run again without their budget)."""
    for row in rows:
        if row.state == TrialState.RUNNING:
            row.state, row.failure_reason, row.finished_at = TrialState.LOST, LOST_BY_DRIVER, utcnow()
