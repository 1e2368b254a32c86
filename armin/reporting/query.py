"""Read-only SQL over a study database, with views that flatten the schema.

Built on `armin.storage`: every call opens the database with `Database.open(readonly=True)` (so the
schema-version check runs on every open, and a file or server of another kind is refused in one
line), and runs its one statement through `armin.storage.adhoc`, where the database itself refuses
writes (SQLite: `mode=ro`, `query_only` and an authorizer; PostgreSQL: a READ ONLY transaction), and a
statement stops at its time limit or on Ctrl-C. Two TEMP views (private to the connection, so they
always match the metrics present):

  trials   one row per trial attempt: study, kind, arm, factor columns (storage.COMPONENT_COLUMNS), seed,
           state, objective, the final value of every metric, costs, failure details
  curves   one row per evaluation point: study, trial, arm, seed, state, step, metric, value

Non-finite metric values are stored as NULL with a kind (NAN, INF_POS, INF_NEG); the views show
NULL and a `value_kind` column for the objective. Parameters bind as `:name` from a mapping on every
backend (or positionally in the driver's own style).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, inspect, text

from armin.errors import QueryError, StorageError
from armin.storage import COMPONENT_COLUMNS, Database
from armin.storage import adhoc

QUERY_TIMEOUT_S = 60.0  # default limit on one statement (`armin query --timeout`)

TRIAL_COLUMNS = f"""
    s.name AS study, s.kind AS kind, t.number AS trial, t.config_id, t.arm, t.replicate, t.seed, t.attempt,
    t.spec_version,
    t.retry_of_id, t.state, t.value AS objective, t.value_kind AS objective_kind,
    {", ".join(f"t.{c}" for c in COMPONENT_COLUMNS)}, t.params_json,
    c.n_params, c.time_per_step_s, c.steps_per_s, c.wall_time_s, c.peak_memory_bytes, c.warmup_s, c.warmup_steps,
    c.cpu_time_per_step_s,
    t.diverged_step, t.failure_reason, t.worker_host, t.device, t.data_source, t.started_at, t.finished_at
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_views(conn: Connection) -> None:
    names = list(conn.execute(text("SELECT DISTINCT name FROM armin_metrics ORDER BY name")).scalars())
    # A view cannot take parameters: the metric names go in as quoted SQL string literals.
    pivot = "".join(f", MAX(CASE WHEN m.name = {_literal(n)} THEN m.value END) AS {_ident(n)}" for n in names)
    final_cols = "".join(f", f.{_ident(n)}" for n in names)
    conn.exec_driver_sql(f"""
        CREATE TEMP VIEW trials AS
        SELECT {TRIAL_COLUMNS}, f.final_step{final_cols}
        FROM armin_trials t
        JOIN armin_studies s ON s.id = t.study_id
        LEFT JOIN armin_costs c ON c.trial_id = t.id
        LEFT JOIN (
            SELECT m.trial_id, m.step AS final_step{pivot}
            FROM armin_metrics m
            JOIN (SELECT trial_id, MAX(step) AS step FROM armin_metrics GROUP BY trial_id) last
              ON last.trial_id = m.trial_id AND last.step = m.step
            GROUP BY m.trial_id, m.step
        ) f ON f.trial_id = t.id
    """)
    conn.exec_driver_sql("""
        CREATE TEMP VIEW curves AS
        SELECT s.name AS study, s.kind AS kind, t.number AS trial, t.config_id, t.arm, t.seed, t.state,
               m.step, m.name AS metric, m.value, m.value_kind
        FROM armin_metrics m
        JOIN armin_trials t ON t.id = m.trial_id
        JOIN armin_studies s ON s.id = t.study_id
    """)


@contextmanager
def reading(db: str | Path | Database) -> Iterator[Database]:
    """The database at `db` (a path or URL) opened read-only and its schema checked (`QueryError` otherwise),
    closed afterwards; an open `Database` is used as it is, and left open."""
    if isinstance(db, Database):
        yield db
        return
    try:
        database = Database.open(db, readonly=True)
    except StorageError as e:
        raise QueryError(str(e)) from None
    try:
        if not inspect(database.engine).has_table("armin_trials"):
            raise QueryError(f"{database} is not an armin database (no armin_trials table)")
        yield database
    finally:
        database.close()


def sql(db: str | Path | Database, statement: str, params: Mapping[str, Any] | Sequence[Any] = (), *,
        timeout_s: float = QUERY_TIMEOUT_S) -> pd.DataFrame:
    """Run one read-only SQL statement; a statement that would write is refused, nothing changes.

    It is stopped after `timeout_s` seconds (`QueryError`) or on Ctrl-C (`KeyboardInterrupt`)."""
    with reading(db) as database:
        result = adhoc.run(database, statement, params, timeout_s=timeout_s, prepare=_create_views)
    return pd.DataFrame(result.rows, columns=result.columns)


def _require_study(db: str | Path | Database, name: str) -> None:
    if sql(db, "SELECT 1 FROM armin_studies WHERE name = :name", {"name": name}).empty:
        known = ", ".join(sql(db, "SELECT name FROM armin_studies ORDER BY name")["name"]) or "none"
        raise QueryError(f"no study named {name!r} in {db} (studies: {known})")


def trials(db: str | Path | Database, name: str) -> pd.DataFrame:
    """One row per trial attempt of study `name`: factors, seed, state, final metrics, costs."""
    _require_study(db, name)
    return sql(db, "SELECT * FROM trials WHERE study = :name ORDER BY trial", {"name": name})


def curves(db: str | Path | Database, name: str) -> pd.DataFrame:
    """One row per evaluation point of study `name` (long format: step, metric, value)."""
    _require_study(db, name)
    return sql(db, "SELECT * FROM curves WHERE study = :name ORDER BY trial, step, metric", {"name": name})


def cost_profile(db: str | Path | Database, name: str) -> pd.DataFrame:
    """One row per (arm, round) of study `name`'s cost profile (empty if it has none): the round's times and
    elements beside the arm's profile facts (parameters, FLOPs, peak step bytes, device, threads, ...)."""
    _require_study(db, name)
    return sql(db, """
        SELECT p.arm, cs.round, cs.train_step_s, cs.infer_s, cs.elements, p.n_params, p.flops_per_step,
               p.peak_step_bytes, p.batch_size, p.device, p.host, p.threads, p.clock, p.warmup_rounds, p.steps_per_round,
               p.measured_at
        FROM armin_cost_samples cs
        JOIN armin_cost_profiles p ON p.id = cs.profile_id
        JOIN armin_studies s ON s.id = p.study_id
        WHERE s.name = :name ORDER BY p.id, cs.round""", {"name": name})
