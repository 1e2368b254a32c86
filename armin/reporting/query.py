"""Read-only SQL over a study database, with views that flatten the schema.

Every connection is opened read-only by SQLite itself (`mode=ro`) and then locked with
`PRAGMA query_only`, so a statement that writes is refused by the database engine, not by parsing
it here. Two TEMP views (private to the connection, so they need no write access and always match
the metrics present):

  trials   one row per trial attempt: study, kind, arm, factor columns, seed, state, objective,
           the final value of every metric, costs, failure details
  curves   one row per evaluation point: study, trial, arm, seed, state, step, metric, value

Non-finite metric values are stored as NULL with a kind (NAN, INF_POS, INF_NEG); the views show
NULL and a `value_kind` column for the objective.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from armin.errors import ArminError


class QueryError(ArminError):
    pass


TRIAL_COLUMNS = """
    s.name AS study, s.kind AS kind, t.number AS trial, t.config_id, t.arm, t.replicate, t.seed, t.attempt,
    t.retry_of_id, t.state, t.value AS objective, t.value_kind AS objective_kind, t.arch, t.formulation,
    t.addressing, t.cell, t.read, t.temperature_kind, t.hidden_size, t.n_slots, t.params_json,
    c.n_params, c.time_per_step_s, c.steps_per_s, c.wall_time_s, c.peak_memory_bytes,
    t.diverged_step, t.failure_reason, t.worker_host, t.device, t.data_source, t.started_at, t.finished_at
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_views(con: sqlite3.Connection) -> None:
    names = [r[0] for r in con.execute("SELECT DISTINCT name FROM armin_metrics ORDER BY name")]
    # A view cannot take parameters: the metric names go in as quoted SQL string literals.
    pivot = "".join(f", MAX(CASE WHEN m.name = {_literal(n)} THEN m.value END) AS {_ident(n)}" for n in names)
    final_cols = "".join(f", f.{_ident(n)}" for n in names)
    con.execute(f"""
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
            GROUP BY m.trial_id
        ) f ON f.trial_id = t.id
    """)
    con.execute("""
        CREATE TEMP VIEW curves AS
        SELECT s.name AS study, s.kind AS kind, t.number AS trial, t.config_id, t.arm, t.seed, t.state,
               m.step, m.name AS metric, m.value, m.value_kind
        FROM armin_metrics m
        JOIN armin_trials t ON t.id = m.trial_id
        JOIN armin_studies s ON s.id = t.study_id
    """)


def connect(db: str | Path) -> sqlite3.Connection:
    """A read-only connection with the `trials` and `curves` views."""
    path = Path(db)
    if not path.exists():
        raise QueryError(f"database not found: {path}")
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30)
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'armin_trials'").fetchone():
            raise QueryError(f"{path} is not an armin database (no armin_trials table)")
        _create_views(con)
    except sqlite3.DatabaseError as e:
        raise QueryError(f"cannot open {path}: {e}") from None
    con.execute("PRAGMA query_only = ON")
    return con


def sql(db: str | Path, statement: str, params: tuple = ()) -> pd.DataFrame:
    """Run one read-only SQL statement; a statement that would write is refused, nothing changes."""
    con = connect(db)
    try:
        cur = con.execute(statement, params)
        columns = [d[0] for d in cur.description or ()]
        return pd.DataFrame(cur.fetchall(), columns=columns)
    except sqlite3.Warning as e:  # e.g. several statements at once
        raise QueryError(f"refused: {e} (one read-only statement at a time)") from None
    except sqlite3.OperationalError as e:
        if "readonly" in str(e) or "query_only" in str(e) or "read-only" in str(e):
            raise QueryError(f"refused: queries are read-only and this statement writes ({e}); the database "
                             f"is unchanged") from None
        raise QueryError(f"SQL error: {e}") from None
    except sqlite3.DatabaseError as e:
        raise QueryError(f"SQL error: {e}") from None
    finally:
        con.close()


def _require_study(db: str | Path, name: str) -> None:
    if sql(db, "SELECT 1 FROM armin_studies WHERE name = ?", (name,)).empty:
        known = ", ".join(sql(db, "SELECT name FROM armin_studies ORDER BY name")["name"]) or "none"
        raise QueryError(f"no study named {name!r} in {db} (studies: {known})")


def trials(db: str | Path, name: str) -> pd.DataFrame:
    """One row per trial attempt of study `name`: factors, seed, state, final metrics, costs."""
    _require_study(db, name)
    return sql(db, "SELECT * FROM trials WHERE study = ? ORDER BY trial", (name,))


def curves(db: str | Path, name: str) -> pd.DataFrame:
    """One row per evaluation point of study `name` (long format: step, metric, value)."""
    _require_study(db, name)
    return sql(db, "SELECT * FROM curves WHERE study = ? ORDER BY trial, step, metric", (name,))
