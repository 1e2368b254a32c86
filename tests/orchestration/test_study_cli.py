"""`armin study` as real processes: SIGKILL and Ctrl-C of the driver, readers during a run, bad input.

The drivers join the test session's 2-CPU Ray cluster with --address (the documented way to use
an existing cluster), so no test pays for starting another one.
"""

import copy
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from spec_files import write
from test_study import TINY

from armin.storage import Database, Study, TrialState

ARMIN = [sys.executable, "-m", "armin.cli.main"]
SLOW = {  # long enough trials that the driver can be killed mid-study
    **copy.deepcopy(TINY),
    "name": "slow",
    "train": {"steps": 1500, "batch_size": 4, "eval_every": 500, "eval_sequences": 8, "eval_batch_size": 8},
    "search": {"n_trials": 4, "seeds_per_config": 1, "sampler": "random", "sampler_seed": 0, "pruner": "none",
               "max_retries": 1},
}


def start(args, **kw):
    return subprocess.Popen([*ARMIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def counts(db_path):
    """Read through a separate, read-only SQLite connection, as a report would during a run."""
    if not db_path.exists():
        return {}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return dict(con.execute("SELECT state, COUNT(*) FROM armin_trials GROUP BY state").fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    finally:
        con.close()


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sigkilled_driver_resumes_without_losing_or_duplicating_trials(ray_cluster, tmp_path):
    spec, db_path = write(tmp_path, SLOW, "slow.toml"), tmp_path / "armin.db"
    driver = start(["study", "run", str(spec), "--db", str(db_path), "--address", ray_cluster, "--max-parallel", "1"])
    seen = []  # a reader querying the database while the study writes
    wait_for(lambda: seen.append(counts(db_path)) or (seen[-1].get("COMPLETE", 0) >= 1 and seen[-1].get("RUNNING")))
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert len(seen) > 1 and seen[0] != seen[-1]

    resumed = subprocess.run([*ARMIN, "study", "resume", "slow", "--db", str(db_path), "--address", ray_cluster],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    db = Database.open(db_path, readonly=True)
    with db.session() as s:
        rows = Study.find_or_raise_by_name(s, "slow").trials
        results = [(t.config_id, t.replicate) for t in rows if t.state.counts_as_result()]
        lost = [t for t in rows if t.state == TrialState.LOST]
        assert sorted(results) == [(c, 0) for c in range(4)]  # all asked for, none twice
        assert len(lost) == 1 and any(t.retry_of_id == lost[0].id for t in rows)
        assert Study.find_or_raise_by_name(s, "slow").status == "complete"
    import optuna

    ostudy = optuna.load_study(study_name="slow", storage=db.url)
    assert len(ostudy.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 4
    assert not ostudy.get_trials(states=[optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING])


def test_ctrl_c_cancels_running_trials_and_records_them(ray_cluster, tmp_path):
    spec, db_path = write(tmp_path, {**SLOW, "name": "intr"}, "intr.toml"), tmp_path / "armin.db"
    driver = start(["study", "run", str(spec), "--db", str(db_path), "--address", ray_cluster])
    wait_for(lambda: counts(db_path).get("RUNNING"))
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130 and "armin study resume intr" in err
    state = counts(db_path)
    assert state.get("CANCELLED", 0) >= 1 and "RUNNING" not in state
    db = Database.open(db_path, readonly=True)
    with db.session() as s:
        assert Study.find_or_raise_by_name(s, "intr").status == "interrupted"
        assert all(t.failure_reason.startswith("interrupted") for t in Study.find_or_raise_by_name(s, "intr").trials
                   if t.state == TrialState.CANCELLED)


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["search"].update(sampler="cmaes"), "search.sampler: 'cmaes' is not allowed"),
    (lambda d: d["space"].update({"model.cell": {"choices": ["gru", "lstm"]}}), "model.cell"),
    (lambda d: d["train"].update(steps=0), "train.steps"),
])
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, mutate, expected):
    data = copy.deepcopy(TINY)
    mutate(data)
    spec, db_path = write(tmp_path, data, "bad.toml"), tmp_path / "armin.db"
    p = subprocess.run([*ARMIN, "study", "run", str(spec), "--db", str(db_path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and expected in p.stderr and str(spec) in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not db_path.exists()


def test_status_and_list_of_unknown_things_are_clear(tmp_path):
    db_path = tmp_path / "armin.db"
    Database.open(db_path).close()
    p = subprocess.run([*ARMIN, "study", "status", "nope", "--db", str(db_path)], capture_output=True, text=True)
    assert p.returncode == 2 and "no study named 'nope'" in p.stderr
    p = subprocess.run([*ARMIN, "study", "status", "nope", "--db", str(tmp_path / "missing.db")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "no database at" in p.stderr and not (tmp_path / "missing.db").exists()
    env = {**os.environ, "ARMIN_DB": str(db_path)}
    p = subprocess.run([*ARMIN, "study", "list"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "no studies" in p.stdout
