"""`armin bench chaos`, quick: a few real kill rounds (worker, node, driver) with every invariant checked.

Run as the real command in its own process: it starts its own multi-node Ray cluster (under a
private RAY_TMPDIR), which must not share a process with the test session's Ray connection.
"""

import json
import subprocess
import sys


def test_a_few_kill_rounds_keep_every_invariant():
    # One kill in each of two studies (an ablation, then a search), each then finished without kills: the
    # bench's whole loop on a small budget (`armin bench chaos --rounds 20` is the benchmark itself).
    p = subprocess.run([sys.executable, "-m", "armin.cli.main", "bench", "chaos", "--rounds", "2", "--steps", "150",
                        "--seed", "3", "--per-study", "1", "--json"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["rounds"] == 2 and sum(out["kills"].values()) == 2
    assert out["violations"] == 0 and out["violation_lines"] == []
    assert out["checks"] >= 2 + 2  # every round, and each study's end, were checked
    assert out["finished_kinds"].get("ablation", 0) >= 1 and out["finished_kinds"].get("search", 0) >= 1
