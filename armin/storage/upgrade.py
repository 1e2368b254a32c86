"""`armin db upgrade`: bring a database written by an older schema version to this one, losing nothing.

Before anything, the file is copied whole (SQLite's backup API, WAL included) to `FILE.schema-N.bak`.
Then, in one transaction: the tables this schema has and the file lacks are created, and every
table whose columns differ (a new column, a NOT NULL that became nullable) is rebuilt the way
SQLite documents for changes ALTER TABLE cannot make: create it anew under a temporary name, copy
the common columns, drop the old one, rename (foreign keys stay off meanwhile and are checked at the
end). A new NOT NULL column needs a server default, which fills the old rows. A change that drops
or retypes data would need its own step here and a new test asset.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL
from sqlalchemy.schema import CreateTable

from armin.storage.db import BUSY_TIMEOUT_MS, StorageError, connect_readonly, copy_database, require_file
from armin.storage.models import SCHEMA_VERSION, SCHEMA_VERSION_KEY, Base, Meta

#: The oldest schema version `upgrade` knows how to bring forward.
OLDEST_UPGRADABLE = 1


@dataclass(frozen=True)
class Upgraded:
    path: Path
    from_version: int
    to_version: int
    backup: Path | None  # None when there was nothing to do
    tables: tuple[str, ...]  # tables created
    columns: tuple[str, ...]  # "table.column" added


def stored_version(path: Path) -> int:
    """The schema version an armin file records, read read-only; one `StorageError` line otherwise."""
    con = connect_readonly(path)
    try:
        has_meta = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (Meta.__tablename__,)).fetchone()
        if not has_meta:
            raise StorageError(f"{path} is not an armin database (no {Meta.__tablename__} table); nothing to upgrade")
        row = con.execute(f"SELECT value FROM {Meta.__tablename__} WHERE key = ?", (SCHEMA_VERSION_KEY,)).fetchone()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"cannot read {path}: {e}") from None
    finally:
        con.close()
    if row is None or not str(row[0]).isdigit():
        raise StorageError(f"{path} records no usable schema version ({row!r}); nothing to upgrade")
    return int(row[0])


def upgrade(path: str | Path) -> Upgraded:
    """Upgrade the armin database at `path` in place (after a full backup); see the module docstring."""
    path = require_file(path, "armin db upgrade")
    if not path.is_file():
        raise StorageError(f"no database at {path}")
    version = stored_version(path)
    if version == SCHEMA_VERSION:
        return Upgraded(path, version, version, None, (), ())
    if version > SCHEMA_VERSION:
        raise StorageError(f"{path} has schema version {version}, newer than this armin's {SCHEMA_VERSION}; use the "
                           f"armin release that wrote it")
    if version < OLDEST_UPGRADABLE:
        raise StorageError(f"{path} has schema version {version}; this armin upgrades versions "
                           f"{OLDEST_UPGRADABLE}-{SCHEMA_VERSION - 1} only")
    backup = _backup(path, version)
    engine = _engine(path)
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            tables, columns = [], []
            for table in Base.metadata.sorted_tables:
                if table.name not in existing:
                    _create(conn, table, table.name)
                    for index in table.indexes:
                        index.create(conn)
                    tables.append(table.name)
                    continue
                have = {c["name"]: c for c in inspect(conn).get_columns(table.name)}
                added = [c.name for c in table.columns if c.name not in have]
                loosened = [c.name for c in table.columns if c.name in have and have[c.name]["nullable"] != c.nullable]
                if added or loosened:
                    _rebuild(conn, table, [c.name for c in table.columns if c.name in have])
                    columns += [f"{table.name}.{name}" for name in added]
                    columns += [f"{table.name}.{name} (now {'nullable' if table.c[name].nullable else 'NOT NULL'})"
                                for name in loosened]
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise StorageError(f"foreign keys broken after the upgrade: {problems[:3]}")
            conn.exec_driver_sql(f"UPDATE {Meta.__tablename__} SET value = ? WHERE key = ?",
                                 (str(SCHEMA_VERSION), SCHEMA_VERSION_KEY))
    except Exception as e:  # noqa: BLE001 - the transaction rolled back: the file is as it was
        raise StorageError(f"cannot upgrade {path} (unchanged; a copy is at {backup}): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        engine.dispose()
    return Upgraded(path, version, SCHEMA_VERSION, backup, tuple(tables), tuple(columns))


def _engine(path: Path):
    """An engine whose transactions are real SQLite transactions around DDL too (pysqlite's own handling
    off, `BEGIN IMMEDIATE` at the start), so a failed upgrade leaves the file exactly as it was."""
    engine = create_engine(URL.create("sqlite", database=str(path)))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _create(conn, table, name: str) -> None:
    """CREATE TABLE `name` with `table`'s columns and constraints (this schema's exact DDL)."""
    ddl = str(CreateTable(table).compile(dialect=conn.dialect)).strip()
    head = f"CREATE TABLE {table.name} ("
    if not ddl.startswith(head):
        raise StorageError(f"unexpected DDL for {table.name}: {ddl[:60]}")
    conn.exec_driver_sql(f"CREATE TABLE {name} (" + ddl[len(head):])


def _rebuild(conn, table, common: list[str]) -> None:
    """Replace `table` by this schema's version of it, keeping every row (SQLite's documented procedure)."""
    for column in table.columns:
        if column.name not in common and not column.nullable and column.server_default is None:
            raise StorageError(f"column {table.name}.{column.name} is NOT NULL without a server default: "
                               f"an upgrade cannot fill the old rows")
    fresh, cols = f"{table.name}__upgraded", ", ".join(common)
    _create(conn, table, fresh)
    conn.exec_driver_sql(f"INSERT INTO {fresh} ({cols}) SELECT {cols} FROM {table.name}")
    conn.exec_driver_sql(f"DROP TABLE {table.name}")
    conn.exec_driver_sql(f"ALTER TABLE {fresh} RENAME TO {table.name}")
    for index in table.indexes:
        index.create(conn)


def _backup(path: Path, version: int) -> Path:
    """A consistent copy of the whole database (WAL included) next to it; an existing copy is never overwritten."""
    target = path.with_name(f"{path.name}.schema-{version}.bak")
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.schema-{version}.{n}.bak"), n + 1
    return copy_database(path, target)
