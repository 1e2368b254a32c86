"""`armin query` never runs away (issue 13 item 8): a statement time limit, and Ctrl-C stops it.

A recursive CTE without an end is the runaway statement: SQLite would count forever, and Python's
own Ctrl-C handling never reaches inside it.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from armin.reporting.query import QueryError, sql
from armin.storage import Database

ARMIN = [sys.executable, "-m", "armin.cli.main"]
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "armin.db"
    Database.open(path).close()
    return path


def test_a_statement_past_its_time_limit_is_stopped_with_a_clear_error(db_path):
    t = time.monotonic()
    with pytest.raises(QueryError, match=r"stopped after 0.5 s"):
        sql(db_path, RUNAWAY, timeout_s=0.5)
    assert time.monotonic() - t < 10
    # a bounded statement under the same limit still runs, and the connection's limit does not leak
    assert sql(db_path, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
                        "SELECT COUNT(*) AS n FROM c", timeout_s=0.5)["n"].tolist() == [1000]


def test_the_cli_timeout_is_one_line_exit_2(db_path):
    p = subprocess.run([*ARMIN, "query", RUNAWAY, "--db", str(db_path), "--timeout", "1"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip() == "armin: error: stopped after 1 s (the statement's time limit; " \
                                                     "raise it with --timeout)"
    p = subprocess.run([*ARMIN, "query", "SELECT 1", "--db", str(db_path), "--timeout", "0"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "--timeout: must be > 0" in p.stderr


def has_open(pid, path):
    try:
        return any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_ctrl_c_stops_a_running_statement(db_path):
    p = subprocess.Popen([*ARMIN, "query", RUNAWAY, "--db", str(db_path), "--timeout", "600"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not has_open(p.pid, db_path):  # imports done, the database open: the statement is next
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)  # deep inside SQLite now
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 130 and err.strip() == "armin: interrupted"
