"""Which file is opened, and that refused or read-only opens write nothing (issue 13, items 3, 4, 12)."""

import hashlib
import re
import sqlite3
import subprocess
import sys

import optuna
import pytest

from armin.reporting.query import QueryError, sql
from armin.storage import SCHEMA_VERSION, Database, StorageError, Study

ARMIN = [sys.executable, "-m", "armin.cli.main"]


def armin_db(path, study="s"):
    with Database.open(path) as db:
        with db.session() as s:
            s.add(Study(name=study, kind="search", goal="g", spec_text="", spec_json="{}", spec_hash="h",
                        optuna_study_name=study))
    return path


def optuna_db(path, name="shared"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name=name, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    return path


def content(path):
    """Every row of every table, as SQL: unchanged when nothing was written (whatever the WAL did)."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as raw:
        return list(raw.iterdump())


def snapshot(path):
    """The file's bytes and mtime, and the folder's listing: what a refused command must leave alone."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, sorted(path.parent.iterdir())


# ---- 4. the path is escaped; a missing file is refused and not created ---------------------------


@pytest.mark.parametrize("name", ["exp#2.db", "a?b%c.db", "odd %41 #x?y=1.db"])
def test_a_name_with_uri_characters_opens_that_file(tmp_path, name):
    armin_db(tmp_path / name, study="right")
    armin_db(tmp_path / name.split("#")[0].split("?")[0], study="wrong")  # the file an unescaped URI would open
    assert list(sql(tmp_path / name, "SELECT name FROM armin_studies")["name"]) == ["right"]
    with Database.open(tmp_path / name, readonly=True) as db:
        assert db.engine.url.database == str(tmp_path / name)
        with db.session() as s:
            assert s.query(Study.name).scalar() == "right"
    assert optuna.storages.RDBStorage(Database.open(tmp_path / name).url).get_all_studies() == []  # same file


@pytest.mark.parametrize("name", ["missing.db", "exp#2.db", "a?b.db"])
def test_a_missing_file_is_refused_and_not_created(tmp_path, name):
    armin_db(tmp_path / "a")  # what `a?b.db` unescaped would open, or create
    before = sorted(tmp_path.iterdir())
    with pytest.raises(QueryError, match=f"^{re.escape(f'no database at {tmp_path / name}')}$"):
        sql(tmp_path / name, "SELECT 1")
    for create in (False, True):
        with pytest.raises(StorageError, match="^no database at "):
            Database.open(tmp_path / name, readonly=True, create=create)
    with pytest.raises(StorageError, match="^no database at "):
        Database.open(tmp_path / name, create=False)  # resume
    assert sorted(tmp_path.iterdir()) == before
    p = subprocess.run([*ARMIN, "query", "SELECT 1", "--db", str(tmp_path / name)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"armin: error: no database at {tmp_path / name}"]
    assert sorted(tmp_path.iterdir()) == before


# ---- 3. a plain Optuna database is not an armin database -------------------------------------------


def test_a_plain_optuna_database_is_refused_untouched(tmp_path):
    path = optuna_db(tmp_path / "optuna.db")
    before = snapshot(path)
    for kw in ({}, {"create": False}, {"readonly": True}):
        with pytest.raises(StorageError) as info:
            Database.open(path, **kw)
        message = str(info.value)
        assert message.startswith(f"{path} is not an armin database: it holds an Optuna storage")
        assert "'shared'" in message and "\n" not in message
        assert snapshot(path) == before  # not switched to WAL, no armin tables, no -wal/-shm left
    with pytest.raises(QueryError, match="is not an armin database"):
        sql(path, "SELECT 1")
    assert snapshot(path) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_other_sqlite_files_are_refused_and_only_empty_ones_become_databases(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE notes (x)")
    before = snapshot(other)
    with pytest.raises(StorageError, match=r"is not an armin database: it holds SQLite tables notes; use another"):
        Database.open(other)
    assert snapshot(other) == before
    empty = tmp_path / "empty.db"
    empty.touch()
    Database.open(empty).close()  # 0 bytes: a new database
    assert list(sql(empty, "SELECT value FROM armin_meta")["value"]) == [str(SCHEMA_VERSION)]


def test_resume_on_an_empty_file_leaves_it_empty(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    before = snapshot(path)
    with pytest.raises(StorageError, match=r"is empty \(0 bytes\), not an armin database"):
        Database.open(path, create=False)
    p = subprocess.run([*ARMIN, "study", "resume", "x", "--db", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "is empty" in p.stderr
    assert snapshot(path) == before and path.stat().st_size == 0


def test_a_same_named_optuna_study_armin_did_not_create_is_not_joined(tmp_path):
    path = armin_db(tmp_path / "armin.db", study="ours")
    with Database.open(path) as db:
        optuna_db(path, name="copy-quick")  # someone's own Optuna study in the armin file
        optuna.create_study(storage=db.url, study_name="ours", load_if_exists=True)  # armin's own: fine
        with pytest.raises(StorageError, match="already holds an Optuna study named 'copy-quick' that armin did not"):
            db.check_new_study_name("copy-quick")
        db.check_new_study_name("ours")
        db.check_new_study_name("new")
    before = content(path)
    p = subprocess.run([*ARMIN, "study", "run", "studies/copy_quick.toml", "--db", str(path), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Optuna study named 'copy-quick'" in p.stderr
    assert content(path) == before  # no armin study row, no lease, no Optuna trial


# ---- 12. `armin query` refuses what would create files or change settings ----------------------------


REFUSED = ["ATTACH DATABASE '{d}/attached.db' AS x", "VACUUM", "VACUUM INTO '{d}/copy.db'", "VACUUM main",
           "DETACH DATABASE main", "PRAGMA user_version = 5", "PRAGMA journal_mode = DELETE", "PRAGMA wal_checkpoint",
           "PRAGMA optimize", "PRAGMA query_only = OFF", "SELECT * FROM pragma_user_version, armin_meta",
           "DELETE FROM armin_meta"]


@pytest.mark.parametrize("statement", REFUSED)
def test_query_refuses_statements_that_write_or_create_files(tmp_path, statement):
    path = armin_db(tmp_path / "armin.db")
    sql(path, "SELECT 1")  # a WAL reader's first read leaves -wal/-shm beside the file: the baseline
    before = snapshot(path)
    statement = statement.format(d=tmp_path)
    if statement.startswith("SELECT"):  # a pragma's table-valued function that only reads is fine
        assert len(sql(path, statement)) == 1
    else:
        with pytest.raises(QueryError, match="^refused: ") as info:
            sql(path, statement)
        assert "\n" not in str(info.value)
    assert snapshot(path) == before


def test_query_allows_pragmas_that_read(tmp_path):
    path = armin_db(tmp_path / "armin.db")
    assert sql(path, "PRAGMA journal_mode").iloc[0, 0] == "wal"
    assert "seed" in set(sql(path, "PRAGMA table_info(armin_trials)")["name"])


def test_query_cli_refuses_vacuum_into_in_one_line_and_creates_nothing(tmp_path):
    path = armin_db(tmp_path / "armin.db")
    sql(path, "SELECT 1")
    before = snapshot(path)
    p = subprocess.run([*ARMIN, "query", f"VACUUM INTO '{tmp_path}/copy.db'", "--db", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "refused" in p.stderr
    assert snapshot(path) == before and not (tmp_path / "copy.db").exists()
