"""`armin bench model --spec`: the cost profile of a spec's arms, through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
ARMIN = [sys.executable, "-m", "armin.cli.main"]


def armin(*args):
    return subprocess.run([*ARMIN, *args], capture_output=True, text=True, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})


def test_bench_model_spec_profiles_every_arm_side_by_side_with_ratios():
    done = armin("bench", "model", "--spec", "ablations/same_config.toml", "--rounds", "4", "--steps-per-round", "2",
                 "--warmup", "1", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    rows = {r["arm"]: r for r in out["rows"]}
    assert list(rows) == ["armin", "twin"] and out["baseline"] == "armin" and out["threads"] == 1  # a trial's cpus
    assert rows["armin"]["n_params"] == rows["twin"]["n_params"] and \
        rows["armin"]["gflops_per_step"] == rows["twin"]["gflops_per_step"]
    twin = rows["twin"]
    assert twin["speed_pairs"] == 4 and twin["speed_ratio_low"] <= twin["speed_ratio"] <= twin["speed_ratio_high"]
    assert all(len(s["train_step_s"]) == 4 for s in out["samples"])


def test_bench_model_spec_refuses_a_search_spec_in_one_line():
    search = next((ROOT / "studies").glob("*.toml"))
    done = armin("bench", "model", "--spec", str(search))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "a search spec has no arms" in done.stderr
