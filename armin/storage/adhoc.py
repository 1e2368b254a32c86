"""Ad-hoc SQL (`armin query`): one statement at a time, made read-only by the database itself.

The only place that knows how each backend refuses writes, stops a runaway statement and reports it;
`armin.reporting.query` builds its views and wording on top, backend-blind.

SQLite: the connection is `mode=ro` (`Database.open(readonly=True)`) and locked with `PRAGMA
query_only`; an authorizer refuses, when a statement is prepared (before it runs), what `mode=ro` lets
through and that creates files or changes settings: ATTACH (and so VACUUM and VACUUM INTO, which attach
their target), DETACH, and every PRAGMA except a few that only read. SQLite's progress handler, called
every few thousand virtual-machine steps, aborts a statement past its time limit or on Ctrl-C (Python's
own SIGINT handling never reaches a statement inside SQLite).

PostgreSQL: the statement runs alone in a READ ONLY transaction that is always rolled back, as a
prepared statement (so one statement: `COMMIT; DELETE ...` is refused), under `statement_timeout`;
psycopg cancels it on Ctrl-C.

TEMP views are private to the connection, so the caller's setup (`prepare`) needs no write access on
SQLite; on PostgreSQL it runs in its own transaction before the guarded one. The connection is closed
afterwards, never pooled, so neither views nor guards outlive the statement.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from armin.errors import QueryError
from armin.storage.db import Database

PROGRESS_STEPS = 10_000  # SQLite VM steps between checks of the clock and Ctrl-C (well under a millisecond)

# PRAGMAs a query may run on SQLite: they only read. Those in READ_PRAGMAS_WITH_ARG also take a table/index name.
READ_PRAGMAS = {"application_id", "auto_vacuum", "busy_timeout", "cache_size", "collation_list", "compile_options",
                "database_list", "encoding", "foreign_keys", "freelist_count", "function_list", "journal_mode",
                "page_count", "page_size", "query_only", "schema_version", "table_list", "user_version"}
READ_PRAGMAS_WITH_ARG = {"foreign_key_list", "index_info", "index_list", "index_xinfo", "table_info", "table_xinfo"}

Params = Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple]


def run(db: Database, statement: str, params: Params = (), *, timeout_s: float,
        prepare: Callable[[Connection], None] = lambda conn: None) -> Result:
    """Run one read-only `statement` on `db`; `QueryError` (one line) if it writes, fails or runs past `timeout_s`.

    `params` bind as `:name` (a mapping) on every backend, or positionally in the driver's own style (SQLite `?`).
    `prepare(conn)` runs first on the same connection (e.g. CREATE TEMP VIEW).
    """
    conn = db.engine.connect()
    try:
        if db.is_sqlite:
            return _run_sqlite(conn, statement, params, timeout_s, prepare)
        return _run_server(conn, statement, params, timeout_s, prepare)
    finally:
        conn.invalidate()  # closes the DBAPI connection: its views and guards go with it
        conn.close()


def _bind(conn: Connection, statement: str, params: Params) -> tuple[str, Any]:
    """The statement and parameters in the driver's own style: a mapping binds as `:name` on every backend."""
    if not isinstance(params, Mapping):
        return statement, tuple(params) or None
    compiled = text(statement).compile(dialect=conn.dialect)
    values = compiled.construct_params(dict(params))
    if compiled.positional:
        return str(compiled), tuple(values[k] for k in compiled.positiontup)
    return str(compiled), values


# ---- SQLite --------------------------------------------------------------------------------------


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


@contextmanager
def _stoppable(con: sqlite3.Connection, timeout_s: float) -> Iterator[list[str]]:
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


def _run_sqlite(conn: Connection, statement: str, params: Params, timeout_s: float,
                prepare: Callable[[Connection], None]) -> Result:
    statement, bound = _bind(conn, statement, params)
    try:
        prepare(conn)
        conn.commit()  # the statement runs outside SQLAlchemy's transaction, as its own (VACUUM may not be in one)
    except DBAPIError as e:
        raise QueryError(f"cannot read the database: {_first_line(e.orig)}") from None
    con = conn.connection.dbapi_connection
    con.execute("PRAGMA query_only = ON")
    refusals: list[str] = []
    con.set_authorizer(_authorizer(refusals))
    try:
        with _stoppable(con, timeout_s) as stopped:
            try:
                cur = con.execute(statement, bound or ())
                columns = [d[0] for d in cur.description or ()]
                rows = cur.fetchall()
            except sqlite3.OperationalError:
                if not stopped:
                    raise
                rows = None
        if rows is None:  # stopped by the clock (Ctrl-C raised KeyboardInterrupt above)
            raise _stopped(timeout_s)
        return Result(columns, rows)
    except (sqlite3.Warning, sqlite3.ProgrammingError) as e:  # several statements at once (which, by Python version)
        if "one statement" not in str(e):
            raise _failed(e) from None
        raise QueryError(f"refused: {e} (one read-only statement at a time)") from None
    except sqlite3.DatabaseError as e:
        if refusals:  # the authorizer denied it while it was prepared: nothing ran
            raise QueryError(f"refused: {refusals[0]}; the database is unchanged") from None
        raise _failed(e) from None


# ---- a server (PostgreSQL) -------------------------------------------------------------------------


def _run_server(conn: Connection, statement: str, params: Params, timeout_s: float,
                prepare: Callable[[Connection], None]) -> Result:
    statement, bound = _bind(conn, statement, params)
    raw = conn.connection.dbapi_connection
    try:
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ WRITE")  # TEMP objects only: prepare's views
            prepare(conn)
    except DBAPIError as e:
        raise QueryError(f"cannot read the database: {_first_line(e.orig)}") from None
    raw.read_only = True  # the guard: BEGIN READ ONLY, checked by the server; rolled back below
    cur = raw.cursor()
    try:
        cur.execute(f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}")
        cur.execute(statement, bound, prepare=True)  # prepared: exactly one statement
        columns = [d.name for d in cur.description or ()]
        rows = cur.fetchall() if cur.description else []
        return Result(columns, [tuple(r) for r in rows])
    except Exception as e:  # noqa: BLE001 - the driver's errors; anything else is re-raised below
        sqlstate = getattr(e, "sqlstate", None)
        if sqlstate is None:
            raise
        if sqlstate == "57014":  # query_canceled: the statement timeout (Ctrl-C raises KeyboardInterrupt)
            raise _stopped(timeout_s) from None
        if sqlstate == "42601" and "multiple commands" in str(e):
            raise QueryError(f"refused: {_first_line(e)} (one read-only statement at a time)") from None
        raise _failed(e) from None
    finally:
        raw.rollback()


# ---- wording shared by both ---------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _stopped(timeout_s: float) -> QueryError:
    return QueryError(f"stopped after {timeout_s:g} s (the statement's time limit; raise it with --timeout)")


def _failed(e: BaseException) -> QueryError:
    message = _first_line(e)
    if "readonly" in message or "query_only" in message or "read-only" in message:
        return QueryError(f"refused: queries are read-only and this statement writes ({message}); the database "
                          f"is unchanged")
    return QueryError(f"SQL error: {message}")
