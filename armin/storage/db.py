"""Open the study database: a SQLite file in WAL mode (the embedded default) or a database server
(PostgreSQL), one session scope, one error type.

`--db` is a path or a SQLAlchemy URL (`locate`). The study driver opens the database writable and is its
only writer; reports and `armin query` open it with `readonly=True`, which the database itself enforces
(SQLite: `mode=ro`; a server: every transaction of the session READ ONLY), and can read while the
driver writes (SQLite's WAL: a reader sees the last committed state, never blocks the writer and is
never blocked by it).

Every read of a file goes through `connect_readonly` (a `file:` URI with the path percent-escaped, so
`exp#2.db` is that file and not `exp`), and every open first looks at an existing file read-only: a
file that is not an armin database of this schema version (an Optuna storage, some other SQLite file,
text) is refused before anything is written to it. Only a missing or empty (0-byte) file becomes a new
database; on a server, only a database without tables. What needs a file (the upgrade's backup, the
chaos snapshots: `copy_database`) refuses a server in one line (`require_file`).

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

from sqlalchemy import Connection, Engine, create_engine, event, insert, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from armin.errors import StorageError, described
from armin.storage.models import SCHEMA_VERSION, SCHEMA_VERSION_KEY, Base, Meta, utcnow

__all__ = ["BUSY_TIMEOUT_MS", "Database", "StorageError", "check_armin_schema", "connect_readonly", "copy_database",
           "locate", "require_file", "utcnow"]

BUSY_TIMEOUT_MS = 30_000  # how long a connection waits for another's lock before "database is locked"


class Database:
    """One armin database: an engine with the right settings and a session scope. Use `Database.open`."""

    def __init__(self, where: Path | URL, engine: Engine, *, readonly: bool) -> None:
        self.path = where if isinstance(where, Path) else None  # the SQLite file (absolute); None on a server
        self.server_url = None if isinstance(where, Path) else where  # the server's URL; None for a file
        self.engine = engine  # for pandas.read_sql and the like; writes go through session()
        self.readonly = readonly
        # expire_on_commit=False: rows returned from a session block stay readable after it closes.
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @classmethod
    def open(cls, target: str | Path, *, readonly: bool = False, create: bool = True) -> Database:
        """Open (and with `create`, create) the database at `target`, a path or a SQLAlchemy URL (`locate`);
        check its schema version.

        An existing file is checked read-only before anything else (see the module docstring), so a
        refused file is left byte-for-byte as it was. `readonly=True` never creates anything: a missing
        file or one without armin tables is an error.
        """
        where = locate(target)
        if isinstance(where, URL):
            return cls._open_server(where, readonly=readonly, create=create)
        path = where
        if path.is_dir():
            raise StorageError(f"database path is a directory: {path}")
        new = not path.exists() or _is_empty(path, create=create and not readonly)
        if new:
            if readonly or not create:
                raise StorageError(f"no database at {path}")
            if not path.parent.is_dir():
                raise StorageError(f"cannot create database {path}: directory {path.parent} does not exist")
        engine = _make_engine(path, readonly=readonly)
        try:
            with engine.begin() as conn:
                if new and not inspect(conn).has_table(Meta.__tablename__):  # not created meanwhile by another
                    _create_schema(conn)
                else:  # checked above already; again here, in this connection's own snapshot
                    check_armin_schema(conn, str(path))
        except StorageError:
            engine.dispose()
            raise
        except (SQLAlchemyError, sqlite3.Error) as e:  # e.g. "file is not a database"
            engine.dispose()
            raise StorageError(f"cannot open database {path}: {_one_line(e)}") from e
        return cls(path, engine, readonly=readonly)

    @classmethod
    def _open_server(cls, url: URL, *, readonly: bool, create: bool) -> Database:
        """A database on a server: a database with no tables becomes an armin database (with `create`);
        `readonly` makes every transaction of the session READ ONLY, which the server enforces."""
        shown = url.render_as_string(hide_password=True)
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as e:  # e.g. the driver (psycopg) is not installed
            raise StorageError(f"cannot open database {shown}: {_one_line(e)}") from e
        if readonly:
            @event.listens_for(engine, "connect")
            def _read_only(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                cursor.close()
                dbapi_connection.commit()
        try:
            with engine.begin() as conn:
                if not inspect(conn).get_table_names():
                    if readonly or not create:
                        raise StorageError(f"no armin database at {shown} (it holds no tables)")
                    _create_schema(conn)
                else:
                    check_armin_schema(conn, shown)
        except StorageError:
            engine.dispose()
            raise
        except SQLAlchemyError as e:
            engine.dispose()
            raise StorageError(f"cannot open database {shown}: {_one_line(e)}") from e
        return cls(url, engine, readonly=readonly)

    @property
    def url(self) -> str:
        """The URL of the database, e.g. for `optuna.storages.RDBStorage`: `sqlite:///PATH` (`#`, `?`, `%` escaped)
        for a file, the server's URL (password included) otherwise."""
        if self.server_url is not None:
            return self.server_url.render_as_string(hide_password=False)
        return URL.create("sqlite", database=str(self.path)).render_as_string()

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

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
            raise StorageError(f"database error in {self}: {_one_line(e)}") from e
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def check_new_study_name(self, name: str) -> None:
        """Refuse (one `StorageError` line) a new armin study named like an Optuna study armin did not create.

        Optuna's `load_if_exists` would silently join that study (its direction, its trials). A name that
        already has an armin study row is armin's own, and is fine. Reads only.
        """
        with self.engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM armin_studies WHERE name = :n"), {"n": name}).first():
                return
            if not inspect(conn).has_table("studies"):
                return
            if conn.execute(text("SELECT 1 FROM studies WHERE study_name = :n"), {"n": name}).first():
                raise StorageError(f"{self} already holds an Optuna study named {name!r} that armin did not "
                                   f"create; give the armin study another name, or use another --db file")

    def close(self) -> None:
        """Close every pooled connection; the last writer to close checkpoints the WAL into the file."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        """The file's path, or the server's URL without its password: what messages name."""
        return str(self.path) if self.server_url is None else self.server_url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({str(self)!r}, readonly={self.readonly})"


def locate(target: str | Path) -> Path | URL:
    """What a `--db` value names: a SQLite file (an absolute path; a `sqlite:///PATH` URL means that file) or a
    database server (a SQLAlchemy URL such as `postgresql+psycopg://user@host/db`)."""
    if isinstance(target, Path) or "://" not in str(target):
        return _absolute(target)
    try:
        url = make_url(str(target))
    except ArgumentError as e:
        raise StorageError(f"--db {target!r}: not a file path or a SQLAlchemy URL ({e})") from None
    if url.get_backend_name() != "sqlite":
        return url
    if not url.database or url.database == ":memory:" or url.query:
        raise StorageError(f"--db {target!r}: a sqlite URL must name a file, as sqlite:///PATH (no options)")
    return _absolute(url.database)


def require_file(target: str | Path | Database, what: str) -> Path:
    """The SQLite file behind `target`; a database server is one `StorageError` line saying `what` needs a file."""
    where = (target.path or target.server_url) if isinstance(target, Database) else locate(target)
    if isinstance(where, URL):
        raise StorageError(f"{what} works on a SQLite file, and {where.render_as_string(hide_password=True)} is a "
                           f"database server: use the server's own tools (pg_dump) instead")
    return where


def _create_schema(conn: Connection) -> None:
    Base.metadata.create_all(conn)
    conn.execute(insert(Meta).values(key=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION)))


def _absolute(path: str | Path) -> Path:
    return Path(path).expanduser().absolute()


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """The one read-only open of a database file: SQLite refuses every write and never creates the file.

    The path goes in as a `file:` URI with `#`, `?` and `%` percent-escaped (`Path.as_uri`), so the
    file opened is the one named. A missing file is `StorageError("no database at PATH")`, and nothing
    is created.
    """
    path = _absolute(path)
    if not path.is_file():
        if path.is_dir():
            raise StorageError(f"database path is a directory: {path}")
        raise StorageError(f"no database at {path}")
    try:
        return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)  # SQLAlchemy's pool may close it from another thread
    except sqlite3.Error as e:
        raise StorageError(f"cannot open database {path}: {_one_line(e)}") from e


def copy_database(path: str | Path, target: str | Path) -> Path:
    """A consistent copy of the database at `path` (WAL included) into the new file `target`.

    SQLite's backup API reads the whole source inside one read transaction, through the one read-only
    open, so a live driver's writes are either all in the copy or not at all.
    """
    src = connect_readonly(require_file(path, "copying a database"))
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return Path(target)


def check_armin_schema(conn: Connection, where: str) -> None:
    """Raise `StorageError` (one line naming the file or server and what it holds) unless `conn` is an armin
    database of this schema version. Reads only."""
    tables = sorted(inspect(conn).get_table_names())
    if Meta.__tablename__ not in tables:
        raise StorageError(f"{where} is not an armin database: it holds {_contents(conn, tables)}; use another --db "
                           f"file")
    stored = conn.execute(text(f"SELECT value FROM {Meta.__tablename__} WHERE key = :k"),
                          {"k": SCHEMA_VERSION_KEY}).scalar()
    if stored != str(SCHEMA_VERSION):
        older = stored is not None and stored.isdigit() and int(stored) < SCHEMA_VERSION
        if older:
            todo = "run `armin db upgrade --db FILE` (it keeps a full backup first), or use a new --db file"
        else:
            todo = "use a new --db file, or read this one with the armin release that wrote it"
        raise StorageError(f"{where} was written by {'an older' if older else 'another'} armin (schema version "
                           f"{stored}; this armin reads version {SCHEMA_VERSION}): {todo}")


def _contents(conn: Connection, tables: list[str]) -> str:
    """What a non-armin database holds, in a few words: an Optuna storage and its studies, or its tables."""
    if {"studies", "trials", "version_info"} <= set(tables):
        names = list(conn.execute(text("SELECT study_name FROM studies ORDER BY study_id LIMIT 6")).scalars())
        shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
        return f"an Optuna storage without armin's tables (Optuna studies: {shown or 'none'})"
    if not tables:
        return "no tables"
    shown = ", ".join(tables[:5]) + (f", ... ({len(tables)} tables)" if len(tables) > 5 else "")
    return f"{'SQLite ' if conn.dialect.name == 'sqlite' else ''}tables {shown}"


def _is_empty(path: Path, *, create: bool) -> bool:
    """Look at an existing file read-only: True if it is empty (a new database), False if it is a current armin
    database; anything else raises `StorageError` before the file is touched."""
    if path.stat().st_size == 0:
        if not create:
            raise StorageError(f"{path} is empty (0 bytes), not an armin database")
        return True
    engine = create_engine("sqlite://", creator=lambda: connect_readonly(path), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if create and conn.exec_driver_sql("SELECT COUNT(*) FROM sqlite_master").scalar() == 0:
                return True  # a SQLite file with nothing in it (e.g. only a header) is as good as empty
            check_armin_schema(conn, str(path))
            return False
    except SQLAlchemyError as e:  # e.g. "file is not a database"
        raise StorageError(f"cannot open database {path}: {_one_line(e)}") from e
    finally:
        engine.dispose()


def _make_engine(path: Path, *, readonly: bool) -> Engine:
    url = URL.create("sqlite", database=str(path))  # readonly: the URL names the file; connect_readonly opens it
    engine = create_engine(url, creator=lambda: connect_readonly(path)) if readonly else create_engine(url)

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


def _one_line(e: BaseException) -> str:
    """The driver's own message ("UNIQUE constraint failed: ..."), without SQLAlchemy's SQL dump."""
    return described(getattr(e, "orig", None) or e)
