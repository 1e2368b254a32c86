"""The database backends the storage and query tests run on: a SQLite file always, and a real PostgreSQL
server when `ARMIN_TEST_POSTGRES_URL` names one (scripts/postgres_for_tests.sh starts a throwaway server and
prints the URL; .ci/run does both). Each PostgreSQL test gets a fresh database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES_ENV = "ARMIN_TEST_POSTGRES_URL"
NO_POSTGRES = f"no PostgreSQL server to test against: set {POSTGRES_ENV} (scripts/postgres_for_tests.sh starts one)"
BACKENDS = ("sqlite", "postgresql")


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a fresh, empty database on the test server (created from the server's URL), dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    server = make_url(postgres_url())
    name = f"armin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # a statement a failed test left running is cancelled, then the database dropped
            conn.exec_driver_sql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def database_target(backend: str, tmp_path) -> Iterator[str | os.PathLike]:
    """Where a fresh armin database of `backend` goes: a file path, or a server database's URL."""
    if backend == "sqlite":
        yield tmp_path / "armin.db"
        return
    with postgres_database() as url:
        yield url
