"""A study on a real two-node Ray cluster on this machine, one node killed mid-study (issue 13).

The cluster is the README's: `ray start --head` (no CPUs, so trials only run on the workers) and two
`ray start --address` nodes of one CPU each, all with token authentication (RAY_AUTH_MODE=token and
a token in $RAY_AUTH_TOKEN on every process, driver included) and a private RAY_TMPDIR. Each node runs
`--block` in its own process group, so SIGKILL of that group is the node dying (raylet and workers).
Then `armin.bench.chaos.violations` reads the finished database: every slot exactly one result, status,
the SQL view and the report agree, Optuna agrees for a search, nothing left RUNNING.
"""

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from spec_files import write
from test_ablation import TINY as TINY_ABLATION
from test_study import TINY as TINY_SEARCH

from armin.bench.chaos import TRIAL_TITLE, children, violations
from armin.storage.db import copy_database

RAY = str(Path(sys.executable).parent / "ray")
ARMIN = [sys.executable, "-m", "armin.cli.main"]
LONG = {"steps": 400, "batch_size": 4, "eval_every": 100, "eval_sequences": 8, "eval_batch_size": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def group_pids(pgid: int) -> list[int]:
    """The node's processes: its process group (ray start, raylet, ...) and all their descendants
    (Ray's worker processes leave the group)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.append(int(entry))
            except OSError:
                pass
    todo = list(out)
    while todo:
        for child in children(todo.pop()):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def runs_a_trial(node: subprocess.Popen) -> bool:
    for pid in group_pids(node.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(TRIAL_TITLE.encode()):
                return True
        except OSError:
            pass
    return False


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def two_nodes():
    tmp = tempfile.mkdtemp(prefix="an", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_TMPDIR": tmp}
    port = free_port()
    address = f"127.0.0.1:{port}"
    started = []

    def ray_start(*args):
        p = subprocess.Popen([RAY, "start", *args, "--block", "--disable-usage-stats"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(p)
        return p

    try:
        ray_start("--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                  "--temp-dir", f"{tmp}/ray")
        status = lambda: subprocess.run([RAY, "status", "--address", address], env=env,  # noqa: E731
                                        capture_output=True, text=True).stdout
        wait_for(lambda: "Active" in status(), 120, "the head")
        nodes = []
        for n in (1, 2):  # one at a time: two nodes starting at once on one host collide
            nodes.append(ray_start("--address", address, "--num-cpus", "1"))
            wait_for(lambda: f"/{n}.0 CPU" in status(), 120, f"worker node {n}")
        yield address, env, nodes
    finally:
        for p in reversed(started):
            for pid in group_pids(p.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("kind,data,total", [
    ("ablation", {**TINY_ABLATION, "name": "two", "train": LONG, "design": {**TINY_ABLATION["design"], "seeds": [1, 2]}}, 4),
    ("search", {**TINY_SEARCH, "name": "two", "train": LONG}, 6),
])
def test_a_node_killed_mid_study_and_the_study_completes_exactly_once(two_nodes, tmp_path, kind, data, total):
    address, env, nodes = two_nodes
    spec, db_path = write(tmp_path, data, "two.toml"), tmp_path / "armin.db"
    command = "ablation" if kind == "ablation" else "study"
    driver = subprocess.Popen([*ARMIN, command, "run", str(spec), "--db", str(db_path), "--address", address,
                               "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def busy_node():
        assert driver.poll() is None, driver.communicate()[1]
        return next((n for n in nodes if runs_a_trial(n)), None)

    victim = wait_for(busy_node, 240, "a trial on a node")
    time.sleep(1)
    for pid in group_pids(victim.pid):  # the node dies: raylet, its workers, everything in its group
        os.kill(pid, signal.SIGKILL)
    _, err = driver.communicate(timeout=420)
    assert driver.returncode == 0, err

    snap = copy_database(db_path, tmp_path / "snap.db")
    assert violations(snap, "two", driver_exited=True, finished=True, total=total) == []
    con = sqlite3.connect(snap)
    lost = con.execute("SELECT id, failure_reason FROM armin_trials WHERE state = 'LOST'").fetchall()
    assert lost, "the killed node's trial was recorded as lost"
    retried = {r for (r,) in con.execute("SELECT retry_of_id FROM armin_trials WHERE retry_of_id IS NOT NULL")}
    assert {i for i, _ in lost} <= retried  # and each lost attempt was run again
    # The checker is not vacuous: a second result for one slot is reported, and so is the disagreement.
    cols = [c[1] for c in con.execute("PRAGMA table_info(armin_trials)") if c[1] not in ("id", "number")]
    con.execute(f"INSERT INTO armin_trials (number, {', '.join(cols)}) SELECT 999, {', '.join(cols)} "
                f"FROM armin_trials WHERE state = 'COMPLETE' LIMIT 1")
    con.commit()
    con.close()
    found = violations(snap, "two", driver_exited=True, finished=True, total=total)
    assert any("more than one result" in v for v in found) and any("disagree" in v for v in found)
