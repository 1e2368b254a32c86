"""scripts/gpu_check.py, the Python parts of the prepared GPU run, on CPU: so its first GPU run does not fail
on something a CPU could have caught. (The whole shell script ran on CPU with DEVICE=cpu TINY=1 by hand;
it takes minutes here, so it is not part of the suite.)"""

import importlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # the Triton check runs interpreted on CPU (set before triton is imported)
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_the_gpu_import_chain_needs_neither_ray_nor_optuna():
    assert gpu_check.check_imports()["ok"]
    driver = gpu_check.check_imports(("armin.orchestration.driver",))  # the blocker really blocks
    assert not driver["ok"] and "blocked" in driver["error"]


def test_the_float64_checks_pass_on_cpu():
    from armin.model import triton_kernel

    if triton_kernel.available() and not torch.cuda.is_available():
        importlib.reload(triton_kernel)  # imported before TRITON_INTERPRET was set: compiled for a GPU
    # Two of the script's configurations and one Triton one: the same code as on the GPU; every configuration's
    # numerics on CPU are tests/model's (fused, graphed and Triton against naive.py).
    configs = ({}, {"cell": "lstm"})
    result = gpu_check.float64_checks("cpu", configs=configs, triton_configs=gpu_check.TRITON_CONFIGS[:1])
    paths = {(json.dumps(c.get("config")), c["path"]) for c in result["checks"]}
    assert result["ok"] and len([p for p in paths if p[1] in ("fused", "graphed")]) == 2 * len(configs)
    assert all(c["max_abs_err"] < 1e-9 for c in result["checks"] if "max_abs_err" in c)
    (triton,) = [c for c in result["checks"] if c["path"] == "triton"]
    assert "skipped" in triton or triton["kernels"] == "triton"  # trained through the Triton kernels


def test_fractional_runs_trials_at_once_and_reports_throughput(monkeypatch):
    monkeypatch.setenv("ARMIN_FUSED_CPP", "0")  # the trials' subprocesses: no extension load
    monkeypatch.delenv("ARMIN_CUDA_KERNELS", raising=False)
    result = gpu_check.fractional("cpu", [2], steps=2, tiny=True)  # one round: each subprocess costs seconds here
    (two,) = result["rows"]
    assert result["ok"] and two["trials_at_once"] == 2 and two["failed"] == []
    assert [t["status"] for t in two["trials"]] == ["completed"] * 2 and two["peak_bytes_per_trial"] > 0
    assert {t["cuda_kernels"] for t in two["trials"]} == {"python"}  # what a GPU trial would have run
    assert two["trials_per_hour"] == pytest.approx(3600 * 2 / two["wall_s"])
    assert two["throughput_vs_one"] is None and result["target_issue_11"] is None  # no 1- or 4-at-once row


def test_triton_warm_runs_the_grids_models_through_the_triton_kernels_in_subprocesses(monkeypatch):
    from armin.model import triton_kernel

    if not triton_kernel.available():
        pytest.skip(triton_kernel.why_unavailable())
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")  # the subprocesses run the kernels interpreted on CPU
    monkeypatch.setenv("ARMIN_FUSED_CPP", "0")  # no extension load in the subprocess
    result = gpu_check.triton_warm("cuda" if torch.cuda.is_available() else "cpu", 8, only=1)
    (job,) = result["jobs"]
    assert result["ok"] and job == {"variant": "reference/armin", "warps": 4, "rc": 0, "seconds": job["seconds"],
                                    "error": None} and job["seconds"] > 0


def test_merge_joins_the_cells_and_a_missing_grid_is_not_ok(tmp_path):
    assert not gpu_check.merge(tmp_path)["ok"]
    for b in (32, 256):
        (tmp_path / f"bench_B{b}_T100.json").write_text(json.dumps(
            {"environment": {"gpu": "x"}, "hidden": 100, "rows": [{"batch": b}], "targets": [{"batch": b}]}))
    (tmp_path / "bench_B32_T1000.json").write_text("")  # a cell that timed out
    merged = gpu_check.merge(tmp_path)
    assert merged["ok"] and merged["environment"] == {"gpu": "x"}
    assert sorted(r["batch"] for r in merged["rows"]) == [32, 256] and len(merged["targets"]) == 2


def test_the_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0
