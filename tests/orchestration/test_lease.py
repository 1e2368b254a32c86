"""The driver lease (one live driver per study) and SIGTERM handled like Ctrl-C.

The lease rules are pinned in-process on hand-made lease rows (no Ray for the refusals); the two
driver races and SIGTERM are real `armin ablation` processes joining the session's Ray cluster.
"""

import copy
import json
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from spec_files import write
from test_ablation import TINY
from test_study_cli import ARMIN, counts, start, wait_for

from armin.orchestration.ablation_spec import load_ablation
from armin.orchestration.driver import Driver
from armin.orchestration.plans import AblationPlan
from armin.storage import LOST_BY_DRIVER, Database, Study, TrialState, utcnow
from armin.storage.lease import STALE_AFTER_S, DriverLease, LeaseLost, StudyBusy, is_stale, lease_key

#: 2 arms x 2 seeds of about 2 s each: long enough to catch a driver mid-study.
SLOW = {**copy.deepcopy(TINY), "train": {**TINY["train"], "steps": 1500, "eval_every": 500}}


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def holder(pid, *, host=None, age_s=0.0):
    t = (utcnow() - timedelta(seconds=age_s)).isoformat()
    return {"owner": "someone-else", "host": host or socket.gethostname(), "pid": pid, "pid_start": None,
            "since": t, "heartbeat": t}


def put_lease(db_path, name, value):
    con = sqlite3.connect(db_path)
    with con:
        con.execute("INSERT OR REPLACE INTO armin_meta (key, value) VALUES (?, ?)", (lease_key(name), json.dumps(value)))
    con.close()


def lease_row(db_path, name):
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT value FROM armin_meta WHERE key = ?", (lease_key(name),)).fetchone()
    finally:
        con.close()
    return None if row is None else json.loads(row[0])


def study_and_trial_rows(db_path):
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return [con.execute(f"SELECT * FROM {table}").fetchall() for table in ("armin_studies", "armin_trials")]
    finally:
        con.close()


def one_result_per_slot(db_path):
    db = Database.open(db_path, readonly=True)
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "abl")
        results = sorted((t.arm, t.seed) for t in study.trials if t.state.counts_as_result())
        return results, study.status, study.trials


SLOTS = sorted((arm, seed) for arm in ("cell=armin", "cell=lstm") for seed in (11, 12))


# ---------------------------------------------------------------- the lease, in-process


def test_a_live_holder_refuses_a_second_lease_in_one_line_naming_it(tmp_path):
    db = Database.open(tmp_path / "armin.db")
    first = DriverLease.take(db, "abl", kind="ablation")
    with pytest.raises(StudyBusy) as e:
        DriverLease.take(db, "abl", kind="ablation")
    message = str(e.value)
    assert "ablation 'abl' is already being run by another driver" in message and "\n" not in message
    assert f"pid {first.value['pid']} on host {socket.gethostname()}" in message and "since 20" in message
    first.release()
    DriverLease.take(db, "abl").release()  # free again
    assert lease_row(db.path, "abl") is None


def test_a_lease_taken_over_is_lost_to_its_old_holder_which_then_deletes_nothing(tmp_path):
    db = Database.open(tmp_path / "armin.db")
    old = DriverLease.take(db, "abl")
    put_lease(db.path, "abl", holder(dead_pid()))  # as if `old` had died
    new = DriverLease.take(db, "abl")
    assert new.took_over["owner"] == "someone-else"
    with pytest.raises(LeaseLost):
        old.renew(every_s=0)
    old.release()
    assert lease_row(db.path, "abl")["owner"] == new.value["owner"]
    new.renew(every_s=0)  # the heartbeat of the holder succeeds
    assert lease_row(db.path, "abl")["heartbeat"] > new.value["since"]


def test_stale_means_dead_pid_here_or_an_old_heartbeat_elsewhere():
    import os

    assert not is_stale(holder(os.getpid()))
    assert is_stale(holder(dead_pid()))
    assert is_stale({**holder(os.getpid()), "pid_start": "0"})  # the pid is another process now
    assert not is_stale(holder(1, host="elsewhere", age_s=STALE_AFTER_S - 5))
    assert is_stale(holder(1, host="elsewhere", age_s=STALE_AFTER_S + 5))


#: One contender (a light process: storage only): take the lease at time T0, hold it until T1, release it.
RACER = """
import sys, time
from armin.storage import Database
from armin.storage.lease import DriverLease, StudyBusy
db, t0, t1 = Database.open(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(t0 - time.time(), 0))
try:
    lease = DriverLease.take(db, "abl")
except StudyBusy:
    lease = None
print("won" if lease else "refused", flush=True)
time.sleep(max(t1 - time.time(), 0))
if lease:
    lease.release()
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_of_drivers_racing_for_a_free_or_stale_lease_exactly_one_wins(tmp_path, stale):
    import time

    db_path, n = tmp_path / "armin.db", 4
    Database.open(db_path).close()
    if stale:
        put_lease(db_path, "abl", holder(dead_pid()))
    t0 = time.time() + 3  # after every contender has started
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(db_path), str(t0), str(t0 + 2)],
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["refused"] * (n - 1) + ["won"] and all(p.returncode == 0 for p in procs)
    assert lease_row(db_path, "abl") is None


def test_a_refused_driver_touches_no_row_of_the_live_one(tmp_path):
    import os

    path = write(tmp_path, TINY, "abl.toml")
    db = Database.open(tmp_path / "armin.db")
    plan = AblationPlan(load_ablation(path))
    with db.session() as s:  # a study mid-run, as another live driver left it (the same spec)
        s.add(Study(name="abl", kind="ablation", goal="g", spec_text=path.read_text(), spec_json=plan.spec_json(),
                    spec_hash=plan.digest(), optuna_study_name="abl", status="running"))
    put_lease(db.path, "abl", holder(os.getpid()))  # alive: this very process
    before = study_and_trial_rows(db.path)
    with pytest.raises(StudyBusy):
        Driver(AblationPlan(load_ablation(path)), path.read_text(), db).run()
    assert study_and_trial_rows(db.path) == before
    assert lease_row(db.path, "abl")["owner"] == "someone-else"


def test_a_dead_drivers_stale_lease_is_taken_over_and_only_then_its_running_rows_are_lost(ray_cluster, tmp_path):
    path = write(tmp_path, TINY, "abl.toml")
    db = Database.open(tmp_path / "armin.db")
    Driver(AblationPlan(load_ablation(path)), path.read_text(), db).run()
    with db.session() as s:  # make the database look like a driver died mid-trial, holding the lease
        study = Study.find_or_raise_by_name(s, "abl")
        last = study.trials[-1]
        last.state, last.value, last.value_kind, last.finished_at = TrialState.RUNNING, None, None, None
        study.status, running_id = "running", last.id
    put_lease(db.path, "abl", holder(dead_pid()))
    Driver(AblationPlan(load_ablation(path)), path.read_text(), db).run()
    results, status, rows = one_result_per_slot(db.path)
    lost = next(t for t in rows if t.id == running_id)
    assert lost.state == TrialState.LOST and lost.failure_reason == LOST_BY_DRIVER
    assert any(t.retry_of_id == running_id for t in rows) and results == SLOTS and status == "complete"
    assert lease_row(db.path, "abl") is None  # released at the end


def test_a_driver_whose_lease_was_taken_over_stops_and_writes_nothing_more(ray_cluster, tmp_path, monkeypatch):
    import os

    import armin.storage.lease as lease_module

    monkeypatch.setattr(lease_module, "HEARTBEAT_S", 0.0)  # renew on every turn of the loop
    path, db_path = write(tmp_path, SLOW, "abl.toml"), tmp_path / "armin.db"
    db = Database.open(db_path)
    seen = []

    def on_progress(p):  # once a trial runs, another driver takes the study over (as if ours had hung)
        if p.running and not seen:
            seen.append(True)
            put_lease(db_path, "abl", holder(os.getpid()))

    with pytest.raises(LeaseLost, match="taken over by another driver"):
        Driver(AblationPlan(load_ablation(path)), path.read_text(), db, on_progress=on_progress,
               max_parallel=1).run()
    _, status, rows = one_result_per_slot(db_path)
    assert status == "running" and [t.state for t in rows] == [TrialState.RUNNING]  # the new holder's to recover
    assert lease_row(db_path, "abl")["owner"] == "someone-else"


# ---------------------------------------------------------------- real driver processes


def test_a_second_driver_is_refused_exit_2_and_the_first_finishes_every_slot_once(ray_cluster, tmp_path):
    spec, db_path = write(tmp_path, SLOW, "slow.toml"), tmp_path / "armin.db"
    args = ["ablation", "run", str(spec), "--db", str(db_path), "--address", ray_cluster, "--max-parallel", "1"]
    first = start(args)
    wait_for(lambda: counts(db_path).get("RUNNING"), timeout=180)
    second = subprocess.run([*ARMIN, *args], capture_output=True, text=True, timeout=120)
    assert first.poll() is None  # the premise: the first was still running when the second was refused
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"ablation 'abl' is already being run by another driver (pid {first.pid} on host " \
           f"{socket.gethostname()}, since " in lines[0]
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    results, status, rows = one_result_per_slot(db_path)
    assert results == SLOTS and status == "complete"
    assert not [t for t in rows if t.state in (TrialState.LOST, TrialState.CANCELLED)]  # nothing re-run
    assert lease_row(db_path, "abl") is None


def test_sigterm_cancels_running_trials_exits_143_and_resume_completes_every_slot_once(ray_cluster, tmp_path):
    spec, db_path = write(tmp_path, SLOW, "slow.toml"), tmp_path / "armin.db"
    driver = start(["ablation", "run", str(spec), "--db", str(db_path), "--address", ray_cluster,
                    "--max-parallel", "1"])
    wait_for(lambda: counts(db_path).get("RUNNING"), timeout=180)
    driver.terminate()  # SIGTERM to the driver alone, as systemd or Kubernetes send it
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 143 and "interrupted (SIGTERM)" in err and "armin ablation resume abl" in err, err
    assert "Traceback" not in err
    _, status, rows = one_result_per_slot(db_path)
    assert status == "interrupted" and not [t for t in rows if t.state == TrialState.RUNNING]
    cancelled = [t for t in rows if t.state == TrialState.CANCELLED]
    assert cancelled and all(t.failure_reason == "interrupted by SIGTERM" for t in cancelled)
    assert lease_row(db_path, "abl") is None

    resumed = subprocess.run([*ARMIN, "ablation", "resume", "abl", "--db", str(db_path), "--address", ray_cluster],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    results, status, rows = one_result_per_slot(db_path)
    assert results == SLOTS and status == "complete"  # no slot lost, none twice
    assert all(any(t.retry_of_id == c.id for t in rows) for c in cancelled)
