"""The storage contract: versioned schema, WAL readers, readonly files, constraints, NaN/inf, cascades."""

import math
import sqlite3
from datetime import datetime, timedelta, timezone

import optuna
import pytest
from sqlalchemy import func, inspect, select, text

from armin.storage import (
    SCHEMA_VERSION,
    Cost,
    Database,
    Metric,
    StorageError,
    Study,
    Trial,
    TrialState,
    ValueKind,
    decode_value,
    encode_value,
    utcnow,
)


def make_study(name="s") -> Study:
    return Study(name=name, kind="search", goal="does memory help?", spec_text="[study]\n", spec_json="{}",
                 spec_hash="abc", optuna_study_name=name)


def make_trial(number=0, **kw) -> Trial:
    return Trial(number=number, config_id=0, replicate=0, seed=7, **kw)


def count(db: Database, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.fixture
def db(db_target):
    """A new armin database: a SQLite file, and a PostgreSQL database when the tests have a server (conftest)."""
    database = Database.open(db_target)
    yield database
    database.close()


# What each backend calls a violated constraint (the driver's own message, in StorageError's one line).
VIOLATION = {"sqlite": {"unique": "UNIQUE", "check": "CHECK"},
             "postgresql": {"unique": "violates unique constraint", "check": "violates check constraint"}}


def violation(db: Database, kind: str) -> str:
    return VIOLATION[db.engine.dialect.name][kind]


# ---- creating, reopening, versions ----------------------------------------------------------------


def test_create_writes_schema_version_and_reopens(tmp_path):
    path = tmp_path / "armin.db"
    Database.open(path).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM armin_meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    assert SCHEMA_VERSION == 2  # 2: spec history, clean trial costs and cost profiles
    Database.open(path).close()  # a second open of a current file is fine
    Database.open(path, readonly=True).close()


def test_wal_mode_is_on(tmp_path):
    with Database.open(tmp_path / "armin.db") as db, db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_other_schema_version_is_refused_naming_both(tmp_path):
    path = tmp_path / "old.db"
    Database.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE armin_meta SET value = '0' WHERE key = 'schema_version'")
    for readonly in (False, True):
        with pytest.raises(StorageError) as info:
            Database.open(path, readonly=readonly)
        message = str(info.value)
        assert "version 0" in message and f"version {SCHEMA_VERSION}" in message and str(path) in message
        assert "\n" not in message


def test_non_database_file_is_a_storage_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, just some text that is long enough to have a header\n" * 20)
    with pytest.raises(StorageError, match="not a database"):
        Database.open(path)
    assert path.read_text().startswith("this is not a database")  # untouched


def test_open_without_create_refuses_a_missing_file(tmp_path):
    with pytest.raises(StorageError, match="no database at"):
        Database.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


# ---- readonly -------------------------------------------------------------------------------------


def test_readonly_refuses_a_write_and_leaves_the_file_unchanged(tmp_path):
    path = tmp_path / "armin.db"
    with Database.open(path) as db:
        with db.session() as s:
            s.add(make_study("kept"))
    with Database.open(path, readonly=True) as ro:
        with pytest.raises(StorageError, match="readonly"):
            with ro.session() as s:
                s.add(make_study("sneaked"))
        with pytest.raises(Exception, match="readonly"):  # the engine itself, not only our session
            with ro.engine.begin() as conn:
                conn.execute(text("INSERT INTO armin_meta (key, value) VALUES ('x', 'y')"))
        with ro.session() as s:
            assert s.scalars(select(Study.name)).all() == ["kept"]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT key FROM armin_meta").fetchall() == [("schema_version",)]


def test_readonly_open_of_missing_path_creates_nothing(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no database at"):
        Database.open(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_readonly_open_of_a_non_armin_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE t (x)")
    with pytest.raises(StorageError, match="not an armin database"):
        Database.open(path, readonly=True)


def test_reader_sees_committed_state_while_writer_holds_a_write_transaction(tmp_path, monkeypatch):
    monkeypatch.setattr("armin.storage.db.BUSY_TIMEOUT_MS", 500)  # without WAL the commit below would wait, then fail
    db = Database.open(tmp_path / "armin.db")
    with db.session() as s:
        s.add(make_study("committed"))
    with Database.open(db.path, readonly=True) as reader:
        with reader.session() as r:
            with db.session() as writer:
                writer.add(make_study("pending"))
                writer.flush()  # INSERT sent, write lock held, not committed
                assert r.scalars(select(Study.name)).all() == ["committed"]
            # The writer committed while the reader's snapshot was open (WAL only); the snapshot holds.
            assert r.scalars(select(Study.name)).all() == ["committed"]
        with reader.session() as r:
            assert sorted(r.scalars(select(Study.name))) == ["committed", "pending"]
    db.close()


# ---- constraints ----------------------------------------------------------------------------------


def test_duplicate_trial_number_is_rejected(db):
    with db.session() as s:
        study = make_study()
        study.trials.append(make_trial(0))
        s.add(study)
    with pytest.raises(StorageError, match=violation(db, "unique")) as info:
        with db.session() as s:
            study = Study.find_or_raise_by_name(s, "s")
            s.add(make_trial(0, study_id=study.id, attempt=2))
    assert info.value.__cause__ is not None
    assert count(db, Trial) == 1  # rolled back


def test_same_number_in_another_study_is_fine(db):
    with db.session() as s:
        for name in ("a", "b"):
            study = make_study(name)
            study.trials.append(make_trial(0))
            s.add(study)
    assert count(db, Trial) == 2


def test_unknown_study_name_is_a_storage_error(db):
    with pytest.raises(StorageError, match="no study named 'nope'"):
        with db.session() as s:
            Study.find_or_raise_by_name(s, "nope")


def test_value_without_matching_kind_is_rejected(db):
    with pytest.raises(StorageError, match=violation(db, "check")):
        with db.session() as s:
            study = make_study()
            study.trials.append(make_trial(0, value=1.0, value_kind=ValueKind.NAN))
            s.add(study)


def test_naive_datetime_is_rejected(db):
    with pytest.raises(StorageError, match="naive datetime"):
        with db.session() as s:
            study = make_study()
            study.trials.append(make_trial(0, started_at=datetime(2024, 1, 1, 12)))
            s.add(study)


def test_datetimes_come_back_as_aware_utc(db):
    local = datetime(2024, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))
    with db.session() as s:
        study = make_study()
        study.trials.append(make_trial(0, started_at=local))
        s.add(study)
    with db.session() as s:
        trial = s.scalars(select(Trial)).one()
        assert trial.started_at == datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
        assert trial.started_at.tzinfo == timezone.utc
        assert trial.study.created_at <= utcnow()


# ---- NaN / inf ------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, kind", [(1.5, ValueKind.FINITE), (math.nan, ValueKind.NAN),
                                     (math.inf, ValueKind.INF_POS), (-math.inf, ValueKind.INF_NEG),
                                     (None, None)])
def test_encode_decode_round_trip(x, kind):
    value, got_kind = encode_value(x)
    assert got_kind == kind
    assert value is None or math.isfinite(value)
    back = decode_value(value, got_kind)
    assert (back is None and x is None) or (math.isnan(back) and math.isnan(x)) or back == x


def test_nan_and_inf_survive_metric_and_trial_rows(db):
    xs = {"a": 0.25, "b": math.nan, "c": math.inf, "d": -math.inf}
    with db.session() as s:
        study = make_study()
        trial = make_trial(0, state=TrialState.DIVERGED, diverged_step=3)
        trial.set_objective(math.nan)
        trial.metrics.extend(Metric.of(3, name, x) for name, x in xs.items())
        study.trials.append(trial)
        s.add(study)
    with db.session() as s:
        trial = s.scalars(select(Trial)).one()
        assert trial.state is TrialState.DIVERGED and math.isnan(trial.objective)
        got = {m.name: m.as_float for m in trial.metrics}
        assert got["a"] == 0.25 and math.isnan(got["b"]) and got["c"] == math.inf and got["d"] == -math.inf
    with db.engine.connect() as conn:  # on disk: NULL value + kind by name
        rows = conn.execute(text("SELECT name, value, value_kind FROM armin_metrics ORDER BY name")).all()
    assert rows == [("a", 0.25, "FINITE"), ("b", None, "NAN"), ("c", None, "INF_POS"), ("d", None, "INF_NEG")]


def test_trial_state_rules():
    assert [s for s in TrialState if not s.is_finished()] == [TrialState.RUNNING]
    assert {s for s in TrialState if s.counts_as_result()} == {
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.DIVERGED}


# ---- cascade --------------------------------------------------------------------------------------


def test_deleting_a_study_deletes_its_trials_metrics_and_costs(db):
    with db.session() as s:
        for name in ("gone", "kept"):
            study = make_study(name)
            for n in range(2):
                trial = make_trial(n, state=TrialState.COMPLETE)
                trial.metrics.append(Metric.of(1, "loss", 0.5))
                trial.cost = Cost(n_params=10, time_per_step_s=0.1, steps_per_s=10.0, wall_time_s=1.0,
                                  peak_memory_bytes=2**33)
                study.trials.append(trial)
            s.add(study)
            s.flush()
            study.trials[1].retry_of_id = study.trials[0].id  # a retry chain inside the study
    with db.session() as s:
        s.delete(Study.find_or_raise_by_name(s, "gone"))
    assert (count(db, Study), count(db, Trial), count(db, Metric), count(db, Cost)) == (1, 2, 2, 2)
    with db.session() as s:
        assert {t.study.name for t in s.scalars(select(Trial))} == {"kept"}
        assert s.scalars(select(Cost.peak_memory_bytes)).all() == [2**33, 2**33]


# ---- sharing the file with Optuna -----------------------------------------------------------------


def test_optuna_shares_the_file(db):
    with db.session() as s:
        s.add(make_study("x"))
    storage = optuna.storages.RDBStorage(db.url)
    study = optuna.create_study(storage=storage, study_name="x")
    study.optimize(lambda t: t.suggest_float("lr", 0.0, 1.0), n_trials=1)
    storage.engine.dispose()
    db.close()
    with Database.open(db.url) as again:
        tables = set(inspect(again.engine).get_table_names())
        assert {"studies", "trials", "armin_studies", "armin_trials", "armin_meta"} <= tables
        with again.session() as s:
            assert Study.find_or_raise_by_name(s, "x").optuna_study_name == "x"
    assert len(optuna.load_study(study_name="x", storage=db.url).trials) == 1
