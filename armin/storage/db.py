"""Open the study database: one SQLite file in WAL mode, one session scope, one error type.

The study driver opens the file writable and is its only writer; reports and `armin query` open it
with `readonly=True`, which SQLite itself enforces (`mode=ro`), and can read while the driver writes
(WAL: a reader sees the last committed state, never blocks the writer and is never blocked by it).

Transactions: SQLAlchemy emits a plain (deferred) `BEGIN` at the start of every session, so a
session reads one consistent snapshot and DDL is transactional; pysqlite's own legacy transaction
handling is switched off. Keep sessions short, and never call Optuna's storage (a second engine on
the same file) inside a `with db.session()` block that has written: Optuna would wait on our lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from armin.errors import ArminError
from armin.storage.models import SCHEMA_VERSION, SCHEMA_VERSION_KEY, Base, Meta, utcnow

__all__ = ["BUSY_TIMEOUT_MS", "Database", "StorageError", "utcnow"]

BUSY_TIMEOUT_MS = 30_000  # how long a connection waits for another's lock before "database is locked"


class StorageError(ArminError):
    """The database cannot be opened, read or written; the message is one line naming the file."""


class Database:
    """One armin SQLite file: an engine with the right pragmas and a session scope. Use `Database.open`."""

    def __init__(self, path: Path, engine: Engine, *, readonly: bool) -> None:
        self.path = path  # absolute
        self.engine = engine  # for pandas.read_sql and the like; writes go through session()
        self.readonly = readonly
        # expire_on_commit=False: rows returned from a session block stay readable after it closes.
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, create: bool = True) -> Database:
        """Open (and with `create`, create) the database at `path`; check its schema version.

        `readonly=True` never creates anything: a missing file or one without armin tables is an error.
        """
        path = Path(path).expanduser().absolute()
        if path.is_dir():
            raise StorageError(f"database path is a directory: {path}")
        if not path.exists():
            if readonly or not create:
                raise StorageError(f"database not found: {path}")
            if not path.parent.is_dir():
                raise StorageError(f"cannot create database {path}: directory {path.parent} does not exist")
        engine = _make_engine(path, readonly=readonly)
        try:
            with engine.begin() as conn:
                _check_or_create_schema(conn, path, create=create and not readonly)
        except StorageError:
            engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error) as e:  # e.g. "file is not a database"
            engine.dispose()
            raise StorageError(f"cannot open database {path}: {_one_line(e)}") from e
        return cls(path, engine, readonly=readonly)

    @property
    def url(self) -> str:
        """The plain `sqlite:///PATH` URL of the file, e.g. for `optuna.storages.RDBStorage`."""
        return f"sqlite:///{self.path}"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on any exception, and always closes.

        Database errors (constraint violations, a write to a readonly file, ...) become `StorageError`
        with the original as `__cause__`; other exceptions pass through unchanged after the rollback.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as e:
            session.rollback()
            raise StorageError(f"database error in {self.path}: {_one_line(e)}") from e
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Close every pooled connection; the last writer to close checkpoints the WAL into the file."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}, readonly={self.readonly})"


def _make_engine(path: Path, *, readonly: bool) -> Engine:
    if readonly:
        # A SQLite URI with mode=ro: SQLite refuses writes and never creates the file.
        url = URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})
    else:
        url = URL.create("sqlite", database=str(path))
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN/COMMIT of its own; see _on_begin
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite; our cascades rely on it
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")  # persistent in the file: readers never block the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _check_or_create_schema(conn: Connection, path: Path, *, create: bool) -> None:
    if not inspect(conn).has_table(Meta.__tablename__):
        if not create:
            raise StorageError(f"{path} is not an armin database (no {Meta.__tablename__} table)")
        Base.metadata.create_all(conn)
        conn.execute(insert(Meta).values(key=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION)))
        return
    stored = conn.scalar(select(Meta.value).where(Meta.key == SCHEMA_VERSION_KEY))
    if stored != str(SCHEMA_VERSION):
        raise StorageError(
            f"{path} has armin schema version {stored}, but this armin uses schema version {SCHEMA_VERSION}; "
            f"use a new --db file (or the armin release that wrote this one)")


def _one_line(e: BaseException) -> str:
    """The driver's own message ("UNIQUE constraint failed: ..."), without SQLAlchemy's SQL dump."""
    cause = getattr(e, "orig", None) or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
