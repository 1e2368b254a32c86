"""`armin db upgrade`: bring a database written by an older schema version to this one, losing nothing.

Every schema change so far is additive (new tables, new columns), so one generic step covers them:
create the tables this schema has and the file lacks, add the missing columns (each must be nullable
or have a server default, which fills the old rows), and record the new version, all in one
transaction. Before that, the file is copied whole (SQLite's backup API, WAL included) to
`FILE.schema-N.bak`, so a researcher's results survive whatever happens. A change that is not
additive (a dropped or retyped column) would need its own step here and a new test asset.

Added columns get no CHECK constraint (SQLite cannot add one to an existing table); armin writes
only valid values, so this loses no rule that the writer does not keep.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.schema import CreateTable

from armin.storage.db import StorageError, connect_readonly
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
    path = Path(path).expanduser().absolute()
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
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 30000")
            existing = set(inspect(conn).get_table_names())
            tables, columns = [], []
            for table in Base.metadata.sorted_tables:
                if table.name not in existing:
                    conn.execute(CreateTable(table))
                    for index in table.indexes:
                        index.create(conn)
                    tables.append(table.name)
                    continue
                have = {c["name"] for c in inspect(conn).get_columns(table.name)}
                for column in table.columns:
                    if column.name in have:
                        continue
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {_column_sql(column, conn.dialect)}")
                    columns.append(f"{table.name}.{column.name}")
            conn.exec_driver_sql(f"UPDATE {Meta.__tablename__} SET value = ? WHERE key = ?",
                                 (str(SCHEMA_VERSION), SCHEMA_VERSION_KEY))
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - the transaction rolled back: the file is as it was
        raise StorageError(f"cannot upgrade {path} (unchanged; a copy is at {backup}): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        engine.dispose()
    return Upgraded(path, version, SCHEMA_VERSION, backup, tuple(tables), tuple(columns))


def _column_sql(column, dialect) -> str:
    """`name TYPE [NOT NULL] [DEFAULT x]` for ALTER TABLE ADD COLUMN; old rows take the default."""
    sql = f"{column.name} {column.type.compile(dialect=dialect)}"
    default = column.server_default.arg if column.server_default is not None else None
    if not column.nullable:
        if default is None:
            raise StorageError(f"column {column.table.name}.{column.name} is NOT NULL without a server default: "
                               f"an upgrade cannot fill the old rows")
        sql += " NOT NULL"
    if default is not None:
        sql += f" DEFAULT {default.text if hasattr(default, 'text') else repr(str(default))}"
    return sql


def _backup(path: Path, version: int) -> Path:
    """A consistent copy of the whole database (WAL included) next to it; an existing copy is never overwritten."""
    target = path.with_name(f"{path.name}.schema-{version}.bak")
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.schema-{version}.{n}.bak"), n + 1
    src = connect_readonly(path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target
