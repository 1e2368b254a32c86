"""Starting a driver against Ray never hangs and never touches the study when it fails (issue 13: 8, 11).

Real processes: the CLI driver, the test session's local Ray cluster (token authentication, Ray's
default), a socket that accepts connections and never speaks Ray, and a fresh local cluster where an
earlier `ray start` left a dead address behind (RAY_TMPDIR points Ray at a private temp dir, so the
real /tmp/ray is never touched).
"""

import copy
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import pytest
from spec_files import write
from test_study import TINY
from test_study_cli import ARMIN, start

FAST = {**copy.deepcopy(TINY), "name": "start", "search": {**TINY["search"], "n_trials": 2, "seeds_per_config": 1}}


def rows(db_path):
    """Every study and trial row, as plain tuples (to show a failed start changed nothing)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return (con.execute("SELECT name, status, updated_at FROM armin_studies").fetchall(),
                con.execute("SELECT * FROM armin_trials ORDER BY id").fetchall())
    finally:
        con.close()


def one_line_exit_2(p, expected):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert expected in p.stderr, p.stderr


@pytest.fixture(scope="module")
def finished(ray_cluster, tmp_path_factory):
    """A complete study in a database, for failed resumes to leave alone."""
    tmp = tmp_path_factory.mktemp("finished")
    spec, db_path = write(tmp, FAST, "start.toml"), tmp / "armin.db"
    p = subprocess.run([*ARMIN, "study", "run", str(spec), "--db", str(db_path), "--address", ray_cluster, "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return db_path


def resume(db_path, *extra, env=None, timeout=90):
    return subprocess.run([*ARMIN, "study", "resume", "start", "--db", str(db_path), "--quiet", *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("address,expected", [
    ("not an address", "--address: expected HOST:PORT"),
    ("10.0.0.1:99999", "--address: expected HOST:PORT"),
    ("127.0.0.1:1", "nothing accepts connections there"),
])
def test_an_address_that_is_malformed_or_dead_is_one_line_and_the_study_untouched(finished, address, expected):
    before = rows(finished)
    t = time.monotonic()
    one_line_exit_2(resume(finished, "--address", address), expected)
    assert time.monotonic() - t < 60
    assert rows(finished) == before  # status still "complete", no trial marked


def test_ray_address_from_the_environment_is_checked_the_same_way(finished):
    before = rows(finished)
    env = {**os.environ, "RAY_ADDRESS": "nowhere at all"}
    one_line_exit_2(resume(finished, env=env), "$RAY_ADDRESS: expected HOST:PORT")
    assert rows(finished) == before


@pytest.fixture
def silent_server():
    """Something that accepts TCP connections and never answers: Ray's own connect would retry for minutes."""
    srv = socket.create_server(("0.0.0.0", 0))
    srv.listen(16)
    srv.settimeout(120)
    yield f"127.0.0.1:{srv.getsockname()[1]}", srv
    srv.close()


SHORT = {**os.environ, "ARMIN_CONNECT_TIMEOUT_S": "3"}  # the connect timeout, shortened so the suite need not wait


def test_a_server_that_is_not_ray_is_one_line_within_the_timeout(finished, silent_server):
    before = rows(finished)
    t = time.monotonic()
    p = resume(finished, "--address", silent_server[0], env=SHORT)
    one_line_exit_2(p, "cannot connect to Ray (")
    assert "within about 9 s" in p.stderr  # the message names the timeout that applied
    assert time.monotonic() - t < 60  # no hang: the shortened timeout's ~9 s of retries, and a start-up
    assert rows(finished) == before


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan"])
def test_a_bad_connect_timeout_is_one_line_naming_the_variable(finished, value):
    before = rows(finished)
    env = {**os.environ, "ARMIN_CONNECT_TIMEOUT_S": value}
    one_line_exit_2(resume(finished, "--address", "127.0.0.1:1", env=env), "$ARMIN_CONNECT_TIMEOUT_S: expected a positive")
    assert rows(finished) == before


def test_sigterm_while_connecting_exits_143_and_leaves_the_study_alone(finished, silent_server):
    before = rows(finished)
    p = start(["study", "resume", "start", "--db", str(finished), "--quiet", "--address", silent_server[0]], env=SHORT)
    silent_server[1].accept()  # the driver's first connection: it is connecting now
    time.sleep(2)  # and Ray is retrying against the silent server
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143 and "Traceback" not in err, err
    assert rows(finished) == before


def test_a_driver_without_the_clusters_auth_mode_is_one_line(finished, ray_cluster):
    # The session's cluster uses token authentication (Ray's default for a local start): a driver that
    # disables it is refused by the cluster; armin says so in one line naming RAY_AUTH_MODE.
    before = rows(finished)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    one_line_exit_2(resume(finished, "--address", ray_cluster, env=env), "RAY_AUTH_MODE=token")
    assert rows(finished) == before


@pytest.mark.parametrize("resources,device,expected", [
    ({"cpus": 1000, "gpus": 0}, "cpu", "cpus = 1000"),
    ({"cpus": 1, "gpus": 1}, "cuda", "gpus = 1"),  # a GPU trial on the session's CPU-only cluster
])
def test_resources_no_node_can_hold_are_refused_at_start(ray_cluster, tmp_path, resources, device, expected):
    data = {**FAST, "name": "huge", "resources": resources, "train": {**FAST["train"], "device": device}}
    spec, db_path = write(tmp_path, data, "huge.toml"), tmp_path / "a.db"
    p = subprocess.run([*ARMIN, "study", "run", str(spec), "--db", str(db_path), "--address", ray_cluster, "--quiet"],
                       capture_output=True, text=True, timeout=90)
    one_line_exit_2(p, expected)
    assert rows(db_path) == ([], [])  # no study row was written, let alone left "running"


def test_without_an_address_a_fresh_local_cluster_is_started_not_a_dead_recorded_one(tmp_path):
    # Ray reads $RAY_TMPDIR/ray/ray_current_cluster (written by `ray start`) when no address is given;
    # it names a dead cluster here, as after a crashed or rebooted `ray start`.
    ray_tmp = tempfile.mkdtemp(prefix="ar", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        os.makedirs(f"{ray_tmp}/ray")
        with open(f"{ray_tmp}/ray/ray_current_cluster", "w") as f:
            f.write("127.0.0.1:1\n")
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
        env["RAY_TMPDIR"] = ray_tmp
        spec, db_path = write(tmp_path, FAST, "start.toml"), tmp_path / "a.db"
        p = subprocess.run([*ARMIN, "study", "run", str(spec), "--db", str(db_path), "--quiet"],
                           capture_output=True, text=True, timeout=240, env=env)
        assert p.returncode == 0, p.stderr
        assert "Token authentication" not in p.stderr  # Ray's notice on every local start is silenced
        studies, trials = rows(db_path)
        assert [s[:2] for s in studies] == [("start", "complete")] and len(trials) == 2
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
