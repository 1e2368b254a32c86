"""Read-only SQL over a study database, with views that flatten the schema.

Every connection is opened read-only by SQLite itself (`connect_readonly`: `mode=ro`, the path
escaped) and then locked with `PRAGMA query_only`, so a statement that writes is refused by the
database engine, not by parsing it here. An authorizer on the connection refuses, when a statement is
prepared (before it runs), what `mode=ro` lets through and that creates files or changes settings:
ATTACH (and so VACUUM and VACUUM INTO, which attach their target), DETACH, and every PRAGMA except a
few that only read. Two TEMP views (private to the connection, so they need no write access and always match
the metrics present):

  trials   one row per trial attempt: study, kind, arm, factor columns, seed, state, objective,
           the final value of every metric, costs, failure details
  curves   one row per evaluation point: study, trial, arm, seed, state, step, metric, value

Non-finite metric values are stored as NULL with a kind (NAN, INF_POS, INF_NEG); the views show
NULL and a `value_kind` column for the objective.

A statement runs under a time limit and stops on Ctrl-C: SQLite's progress handler, called every few
thousand virtual-machine steps, aborts it (Python's own SIGINT handling never reaches a statement
inside SQLite, so a runaway query would otherwise ignore Ctrl-C).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from armin.errors import QueryError
from armin.storage.db import StorageError, check_armin_schema, connect_readonly


QUERY_TIMEOUT_S = 60.0  # default limit on one statement (`armin query --timeout`)
PROGRESS_STEPS = 10_000  # SQLite VM steps between checks of the clock and Ctrl-C (well under a millisecond)


TRIAL_COLUMNS = """
    s.name AS study, s.kind AS kind, t.number AS trial, t.config_id, t.arm, t.replicate, t.seed, t.attempt,
    t.spec_version,
    t.retry_of_id, t.state, t.value AS objective, t.value_kind AS objective_kind, t.arch, t.formulation,
    t.addressing, t.cell, t.read, t.temperature_kind, t.hidden_size, t.n_slots, t.params_json,
    c.n_params, c.time_per_step_s, c.steps_per_s, c.wall_time_s, c.peak_memory_bytes, c.warmup_s, c.warmup_steps,
    c.cpu_time_per_step_s,
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


# PRAGMAs a query may run: they only read. Those in READ_PRAGMAS_WITH_ARG also take a table/index name.
READ_PRAGMAS = {"application_id", "auto_vacuum", "busy_timeout", "cache_size", "collation_list", "compile_options",
                "database_list", "encoding", "foreign_keys", "freelist_count", "function_list", "journal_mode",
                "page_count", "page_size", "query_only", "schema_version", "table_list", "user_version"}
READ_PRAGMAS_WITH_ARG = {"foreign_key_list", "index_info", "index_list", "index_xinfo", "table_info", "table_xinfo"}


def _authorizer(refusals: list[str]):
    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            refusals.append("ATTACH, DETACH and VACUUM (which would create or change files)")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if (name in READ_PRAGMAS and arg2 is None) or name in READ_PRAGMAS_WITH_ARG:
                return sqlite3.SQLITE_OK
            refusals.append(f"PRAGMA {name}{'' if arg2 is None else ' = ' + arg2} (a query may only run PRAGMAs "
                            f"that read, such as table_info(NAME) or journal_mode)")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    return authorize


def connect(db: str | Path, refusals: list[str] | None = None) -> sqlite3.Connection:
    """A read-only connection with the `trials` and `curves` views; what its authorizer denies is appended to
    `refusals` (one reason per denial)."""
    path = Path(db)
    try:
        con = connect_readonly(path)
    except StorageError as e:
        raise QueryError(str(e)) from None
    try:
        check_armin_schema(con, path.expanduser().absolute())
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'armin_trials'").fetchone():
            raise QueryError(f"{path} is not an armin database (no armin_trials table)")
        _create_views(con)
        con.execute("PRAGMA query_only = ON")
    except StorageError as e:
        con.close()
        raise QueryError(str(e)) from None
    except sqlite3.DatabaseError as e:
        con.close()
        raise QueryError(f"cannot open {path}: {e}") from None
    con.set_authorizer(_authorizer([] if refusals is None else refusals))
    return con


@contextmanager
def _stoppable(con: sqlite3.Connection, timeout_s: float):
    """Abort the connection's statement past `timeout_s` or on Ctrl-C; yields the reason list (empty: ran)."""
    stopped: list[str] = []
    deadline = time.monotonic() + timeout_s
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None

    def on_sigint(signum, frame):
        stopped.append("interrupt")

    def check() -> int:
        if not stopped and time.monotonic() > deadline:
            stopped.append("timeout")
        return 1 if stopped else 0

    if main:
        signal.signal(signal.SIGINT, on_sigint)
    con.set_progress_handler(check, PROGRESS_STEPS)
    try:
        yield stopped
    finally:
        con.set_progress_handler(None, PROGRESS_STEPS)
        if main:
            signal.signal(signal.SIGINT, previous)
    if stopped and stopped[0] == "interrupt":
        raise KeyboardInterrupt


def sql(db: str | Path, statement: str, params: tuple = (), *, timeout_s: float = QUERY_TIMEOUT_S) -> pd.DataFrame:
    """Run one read-only SQL statement; a statement that would write is refused, nothing changes.

    It is stopped after `timeout_s` seconds (`QueryError`) or on Ctrl-C (`KeyboardInterrupt`)."""
    refusals: list[str] = []
    con = connect(db, refusals)
    try:
        with _stoppable(con, timeout_s) as stopped:
            try:
                cur = con.execute(statement, params)
                columns = [d[0] for d in cur.description or ()]
                rows = cur.fetchall()
            except sqlite3.OperationalError:
                if stopped:
                    rows = None
                else:
                    raise
        if rows is None:  # stopped by the clock (Ctrl-C raised KeyboardInterrupt above)
            raise QueryError(f"stopped after {timeout_s:g} s (the statement's time limit; raise it with --timeout)")
        return pd.DataFrame(rows, columns=columns)
    except sqlite3.Warning as e:  # e.g. several statements at once
        raise QueryError(f"refused: {e} (one read-only statement at a time)") from None
    except sqlite3.DatabaseError as e:
        if refusals:  # the authorizer denied it while it was prepared: nothing ran
            raise QueryError(f"refused: {refusals[0]}; the database is unchanged") from None
        if "readonly" in str(e) or "query_only" in str(e) or "read-only" in str(e):
            raise QueryError(f"refused: queries are read-only and this statement writes ({e}); the database "
                             f"is unchanged") from None
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


def cost_profile(db: str | Path, name: str) -> pd.DataFrame:
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
        WHERE s.name = ? ORDER BY p.id, cs.round""", (name,))
