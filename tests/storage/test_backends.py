"""The same contract on every backend (a SQLite file; PostgreSQL when the tests have a server), and what a
server URL is refused for. `db_target` (conftest) is a fresh database's --db value on each backend."""

import pytest
from sqlalchemy import select, text

from armin.storage import SCHEMA_VERSION, Database, StorageError, Study
from armin.storage.db import copy_database, locate, require_file
from armin.storage.lease import DriverLease, StudyBusy, lease_key
from armin.storage.upgrade import upgrade

SERVER = "postgresql+psycopg://armin:secret@db.example:5432/armin"  # parsed only: nothing connects to it


def make_study(name="s") -> Study:
    return Study(name=name, kind="search", goal="g", spec_text="", spec_json="{}", spec_hash="h",
                 optuna_study_name=name)


def meta(db: Database) -> dict[str, str]:
    with db.engine.connect() as conn:
        return dict(conn.execute(text("SELECT key, value FROM armin_meta")).all())


def test_a_new_database_records_its_schema_version_and_reopens(db_target):
    with Database.open(db_target) as db:
        assert meta(db) == {"schema_version": str(SCHEMA_VERSION)}
        with db.session() as s:
            s.add(make_study("kept"))
    with Database.open(db_target, create=False) as db, db.session() as s:
        assert s.scalars(select(Study.name)).all() == ["kept"]


def test_63_bit_seeds_and_large_counts_round_trip(db_target):
    from armin.seeding import derive_seed
    from armin.storage import Cost, Trial

    seed = derive_seed(0, "arm", 1)
    assert seed >= 2**62  # this one needs all 63 bits (a server's INTEGER holds 31)
    with Database.open(db_target) as db:
        with db.session() as s:
            study = make_study()
            trial = Trial(number=0, config_id=0, replicate=0, seed=seed)
            trial.cost = Cost(n_params=2**40, time_per_step_s=0.1, steps_per_s=10.0, wall_time_s=1.0,
                              peak_memory_bytes=2**50)
            study.trials.append(trial)
            s.add(study)
        with db.session() as s:
            assert s.execute(select(Trial.seed, Cost.n_params, Cost.peak_memory_bytes).join(Cost)).one() == \
                (seed, 2**40, 2**50)


def test_readonly_refuses_a_write_and_changes_nothing(db_target):
    Database.open(db_target).close()
    with Database.open(db_target, readonly=True) as ro:
        with pytest.raises(StorageError, match="readonly|read-only") as info:
            with ro.session() as s:
                s.add(make_study("nope"))
        assert "\n" not in str(info.value)
        assert meta(ro) == {"schema_version": str(SCHEMA_VERSION)}
        with ro.session() as s:
            assert s.scalars(select(Study.name)).all() == []


def test_another_schema_version_is_refused_naming_both(db_target):
    with Database.open(db_target) as db, db.session() as s:
        s.execute(text("UPDATE armin_meta SET value = '1' WHERE key = 'schema_version'"))
    for kw in ({}, {"readonly": True}):
        with pytest.raises(StorageError, match=f"schema version 1; this armin reads version {SCHEMA_VERSION}"):
            Database.open(db_target, **kw)


def test_a_database_of_other_tables_is_refused_untouched(db_target):
    from sqlalchemy import create_engine

    url = db_target if isinstance(db_target, str) else f"sqlite:///{db_target}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (x INTEGER)")
    for kw in ({}, {"readonly": True}, {"create": False}):
        with pytest.raises(StorageError, match=r"is not an armin database: it holds (SQLite )?tables notes; use"):
            Database.open(db_target, **kw)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM notes").scalar() == 0
        tables = conn.dialect.get_table_names(conn)
    engine.dispose()
    assert tables == ["notes"]  # no armin table was created


def test_the_lease_is_one_statement_on_every_backend(db_target):
    with Database.open(db_target) as db:
        lease = DriverLease.take(db, "s")
        assert meta(db)[lease_key("s")] == lease._text
        with pytest.raises(StudyBusy, match="already being run by another driver"):
            DriverLease.take(db, "s")  # this live process holds it
        lease.renew(every_s=0)
        lease.release()
        assert lease_key("s") not in meta(db)
        DriverLease.take(db, "s").release()  # free again


def test_locate_reads_paths_and_urls(tmp_path):
    assert locate(tmp_path / "a.db") == tmp_path / "a.db"
    assert locate(f"sqlite:///{tmp_path}/b.db") == tmp_path / "b.db"
    assert str(locate(SERVER)) == SERVER.replace("secret", "***")  # a URL prints without its password
    for bad in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro"):
        with pytest.raises(StorageError, match="a sqlite URL must name a file"):
            locate(bad)
    with pytest.raises(StorageError, match="not a file path or a SQLAlchemy URL"):
        locate("::not a url://")


def test_what_needs_a_file_refuses_a_server_in_one_line(tmp_path):
    expected = ("works on a SQLite file, and postgresql+psycopg://armin:***@db.example:5432/armin is a database "
                "server: use the server's own tools (pg_dump) instead")
    for call, what in ((lambda: upgrade(SERVER), "armin db upgrade"),
                       (lambda: copy_database(SERVER, tmp_path / "copy.db"), "copying a database"),
                       (lambda: require_file(SERVER, "x"), "x")):
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value) == f"{what} {expected}"
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_one_line_without_its_password(tmp_path):
    # Connection refused, or psycopg missing (it is in the dev extra): either way one line, the URL masked.
    with pytest.raises(StorageError, match=r"^cannot open database postgresql\+psycopg://armin:\*\*\*@127\.0\.0\.1:1/"
                                           r"armin\?connect_timeout=2: ") as info:
        Database.open("postgresql+psycopg://armin:secret@127.0.0.1:1/armin?connect_timeout=2", readonly=True)
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
