"""`armin query` on every backend (a SQLite file; PostgreSQL when the tests have a server): the views, the
component columns, binding, and the database's own refusal of writes, of a second statement and of a runaway.
The SQLite-only guards (the authorizer, PRAGMAs, VACUUM, Ctrl-C inside SQLite) are tested in tests/storage."""

import json
import math
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from armin.model.config import ModelConfig, TemperatureSchedule
from armin.reporting.query import QueryError, curves, sql, trials
from armin.storage import COMPONENT_COLUMNS, Cost, Database, Metric, Study, Trial, TrialState, component_values
from backends import NO_POSTGRES, postgres_database, postgres_url

ARMIN = [sys.executable, "-m", "armin.cli.main"]
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
MODELS = [ModelConfig(), ModelConfig(cell="lstm", addressing="tardis", read="soft", hidden_size=12, n_slots=3,
                                     temperature=TemperatureSchedule(kind="linear", end=0.5, steps=10))]


@pytest.fixture
def study_db(db_target):
    """Study 'q': two trials, one per model, each with two evaluations of two metrics (one NaN) and a cost."""
    with Database.open(db_target) as db, db.session() as s:
        study = Study(name="q", kind="ablation", goal="g", spec_text="", spec_json="{}", spec_hash="h",
                      optuna_study_name="q")
        for number, model in enumerate(MODELS):
            trial = Trial(number=number, config_id=number, replicate=0, seed=10 + number, arm=f"arm{number}",
                          state=TrialState.COMPLETE, **component_values(model))
            trial.set_objective(0.5 + number)
            for step in (1, 2):
                trial.metrics += [Metric.of(step, "eval_loss", step + number),
                                  Metric.of(step, "odd metric", math.nan if number else 1.0)]
            trial.cost = Cost(n_params=100 + number, time_per_step_s=0.1, steps_per_s=10.0, wall_time_s=1.0)
            study.trials.append(trial)
        s.add(study)
    return db_target


def rows(db_target):
    with Database.open(db_target, readonly=True) as db, db.session() as s:
        return s.scalar(select(func.count()).select_from(Trial)), s.scalar(select(func.count()).select_from(Metric))


def test_component_columns_are_model_config_fields_and_typed_trial_columns():
    from dataclasses import fields

    by_name = {f.name: f for f in fields(ModelConfig)}
    for column, attribute in COMPONENT_COLUMNS.items():
        head, *rest = attribute.split(".")
        assert head in by_name, attribute
        value = component_values(MODELS[1])[column]
        assert type(value) is (int if Trial.__table__.c[column].type.python_type is int else str), column
    assert component_values(MODELS[1]) == {"arch": "armin", "formulation": "reference", "addressing": "tardis",
                                           "cell": "lstm", "read": "soft", "temperature_kind": "linear",
                                           "hidden_size": 12, "n_slots": 3}


def test_the_views_carry_the_component_columns_and_final_metrics(study_db):
    t = trials(study_db, "q")
    assert list(t["trial"]) == [0, 1] and list(t["seed"]) == [10, 11]
    for column in COMPONENT_COLUMNS:
        assert list(t[column]) == [component_values(m)[column] for m in MODELS], column
    assert list(t["final_step"]) == [2, 2] and list(t["eval_loss"]) == [2.0, 3.0]
    assert t["odd metric"].iloc[0] == 1.0 and t["odd metric"].isna().iloc[1]  # NaN is stored as NULL + kind
    assert list(t["objective"]) == [0.5, 1.5] and list(t["n_params"]) == [100, 101]
    c = curves(study_db, "q")
    assert len(c) == 8 and set(c["metric"]) == {"eval_loss", "odd metric"}
    with pytest.raises(QueryError, match="no study named 'nope'"):
        trials(study_db, "nope")


def test_parameters_bind_by_name_on_every_backend(study_db):
    got = sql(study_db, "SELECT arm, n_slots FROM trials WHERE seed = :seed AND arm LIKE :pattern",
              {"seed": 11, "pattern": "arm%"})
    assert got.to_dict("records") == [{"arm": "arm1", "n_slots": 3}]


@pytest.mark.parametrize("statement", ["DELETE FROM armin_trials", "UPDATE armin_trials SET seed = 0",
                                       "DROP TABLE armin_costs", "CREATE TABLE x (a INTEGER)",
                                       "INSERT INTO armin_meta VALUES ('a', 'b')"])
def test_writes_are_refused_by_the_database_and_change_nothing(study_db, statement):
    before = rows(study_db)
    with pytest.raises(QueryError, match="^refused: ") as info:
        sql(study_db, statement)
    assert "\n" not in str(info.value)
    assert rows(study_db) == before


def test_a_second_statement_is_refused_and_nothing_runs(study_db):
    before = rows(study_db)
    with pytest.raises(QueryError, match=r"^refused: .*one read-only statement at a time"):
        sql(study_db, "SELECT 1; DELETE FROM armin_metrics")
    assert rows(study_db) == before


def test_a_runaway_statement_stops_at_its_time_limit(study_db):
    with pytest.raises(QueryError, match=r"^stopped after 0.5 s \(the statement's time limit"):
        sql(study_db, RUNAWAY, timeout_s=0.5)
    assert sql(study_db, "SELECT COUNT(*) AS n FROM trials", timeout_s=0.5)["n"].tolist() == [2]


def test_the_query_command_takes_the_database_as_a_url(study_db):
    url = study_db if isinstance(study_db, str) else f"sqlite:///{study_db}"  # a path: tests/reporting/test_report.py
    p = subprocess.run([*ARMIN, "query", "SELECT arm, cell FROM trials ORDER BY arm", "--db", url,
                        "--format", "json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"arm": "arm0", "cell": "armin"}, {"arm": "arm1", "cell": "lstm"}]


@pytest.mark.skipif(not postgres_url(), reason=NO_POSTGRES)
def test_ctrl_c_cancels_a_statement_on_the_server():
    """On SQLite the progress handler stops it (test_query_limits.py); on PostgreSQL psycopg cancels it on the
    server. The statement is seen running in pg_stat_activity before the signal, and gone after."""
    import signal
    import time

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    with postgres_database() as url:
        Database.open(url).close()
        p = subprocess.Popen([*ARMIN, "query", RUNAWAY, "--db", url, "--timeout", "600"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        watch = create_engine(url, poolclass=NullPool)
        running = text("SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH RECURSIVE%'")
        try:
            deadline = time.monotonic() + 60
            while True:
                with watch.connect() as conn:  # a new transaction each time: pg_stat_activity is per-transaction
                    if conn.execute(running).scalar():
                        break
                assert p.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=30)
            assert p.returncode == 130 and err.strip() == "armin: interrupted"
            with watch.connect() as conn:
                assert conn.execute(running).scalar() == 0  # cancelled on the server, not left running
        finally:
            p.kill()
            watch.dispose()
