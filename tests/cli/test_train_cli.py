"""`armin train` end to end through the real entry point: results, help, and one-line errors."""

import dataclasses
import json
import subprocess
import sys

import pytest

from armin.cli.main import build_parser
from armin.cli.train import GROUPS

ARMIN = [sys.executable, "-m", "armin.cli.main"]
TINY = ["--task", "copy", "--task-option", "max_len=3", "--hidden-size", "8", "--n-slots", "4", "--r-size", "4",
        "--steps", "4", "--eval-every", "2", "--eval-sequences", "4", "--batch-size", "2", "--quiet"]


def armin(*args, **kw):
    return subprocess.run([*ARMIN, *args], capture_output=True, text=True, timeout=120, **kw)


def test_train_writes_a_json_result(tmp_path):
    out = tmp_path / "r.json"
    p = armin("train", *TINY, "--cell", "lstm", "--seed", "5", "--out", str(out))
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    assert result["status"] == "completed" and result["seed"] == 5 and result["steps_done"] == 4
    assert result["config"]["model"]["cell"] == "lstm" and result["config"]["task"]["max_len"] == 3
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert "bits_error" in p.stdout


def test_config_file_is_read_and_flags_override_it(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('seed = 9\n[task]\nname = "copy"\nmax_len = 3\n[model]\nhidden_size = 8\nn_slots = 4\n'
                   'r_size = 4\naddressing = "input_only"\n[train]\nsteps = 2\neval_every = 1\n'
                   'eval_sequences = 2\nbatch_size = 2\n')
    out = tmp_path / "r.json"
    p = armin("train", "--config", str(cfg), "--steps", "3", "--quiet", "--out", str(out))
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    assert result["seed"] == 9 and result["steps_done"] == 3
    assert result["config"]["model"]["addressing"] == "input_only"


@pytest.mark.parametrize("args,expected", [
    (["--cell", "gru"], "--cell: invalid choice: 'gru' (choose from 'armin', 'lstm', 'tardis')"),
    (["--addressing", "content"], "--addressing: invalid choice"),
    (["--task", "sorting"], "--task: invalid choice"),
    (["--hidden-size", "0"], "--hidden-size: must be >= 1, got 0"),
    (["--lr", "-1"], "--lr: must be > 0"),
    (["--temperature-kind", "linear"], "--temperature-steps: a linear anneal needs steps > 0"),
    (["--temperature-start", "0"], "--temperature-start: temperatures must be > 0"),
    (["--task-option", "max_len=0"], "--task-option max_len:"),
    (["--task-option", "colour=3"], "--task-option: unknown key 'colour' (allowed: name, width, min_len, max_len)"),
    (["--task-option", "max_len"], "--task-option: expected KEY=VALUE"),
    (["--steps", "many"], "--steps: invalid int value"),
    # non-finite numbers pass every `> 0` check, then train on garbage (eps = inf never learns)
    (["--lr", "inf"], "--lr: must be a finite number, got inf"),
    (["--lr", "nan"], "--lr: must be a finite number, got nan"),
    (["--eps", "inf"], "--eps: must be a finite number, got inf"),
    (["--weight-decay", "inf"], "--weight-decay: must be a finite number, got inf"),
    (["--clip-threshold", "inf"], "--clip-threshold: must be a finite number, got inf"),
    (["--temperature-start", "inf"], "--temperature-start: must be a finite number, got inf"),
    (["--temperature-end", "nan"], "--temperature-end: must be a finite number, got nan"),
    (["--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["--device", "cuda:abc"], "--device: must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got 'cuda:abc'"),
    (["--device", "cudafoo"], "--device: must be 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, expected):
    p = armin("train", *args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_bad_config_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ncell = 'gru'\n")
    p = armin("train", "--config", str(bad))
    assert p.returncode == 2 and str(bad) in p.stderr and "'gru' is not allowed" in p.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    p = armin("train", "--config", str(broken))
    assert p.returncode == 2 and str(broken) in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_help_explains_every_option():
    assert armin("--help").returncode == 0
    text = armin("train", "--help").stdout
    build_parser()  # fills each group's field -> flag table in this process
    for group in GROUPS:
        for f in dataclasses.fields(group.cls):
            if not dataclasses.is_dataclass(f.type) and f.name != "temperature":
                assert group.flags[f.name] in text, f.name
    # every generated flag has a help text taken from the field's comment
    assert "straight-through hard one-hot" in text and "inverse" in text


def one_line_exit_2(p) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    return lines[0]


def test_non_finite_values_in_a_run_config_name_the_file_and_key(tmp_path):
    cfg = tmp_path / "run.toml"
    for section, key in [("optimizer", "lr"), ("optimizer", "eps"), ("optimizer", "weight_decay"),
                         ("optimizer", "clip_threshold"), ("model.temperature", "start"),
                         ("model.temperature", "end")]:
        cfg.write_text(f"[{section}]\n{key} = inf\n")
        line = one_line_exit_2(armin("train", "--config", str(cfg)))
        assert f"{cfg}: --" in line or f"{cfg}: cli.{section}.{key}" in line, line
        assert "must be a finite number, got inf" in line, line
    cfg.write_text("seed = -3\n")
    assert "seed: must be >= 0, got -3" in one_line_exit_2(armin("train", "--config", str(cfg)))


def test_out_is_checked_before_training(tmp_path):
    # the result used to be lost, after the whole run, with a traceback
    line = one_line_exit_2(armin("train", *TINY, "--out", str(tmp_path)))
    assert line == f"armin: error: --out: {tmp_path} is a directory; give a file name, e.g. {tmp_path / 'result.json'}"
    missing = tmp_path / "no" / "r.json"
    p = armin("train", *TINY, "--out", str(missing))
    assert one_line_exit_2(p) == f"armin: error: --out: the folder {missing.parent} does not exist; create it first"
    assert "step" not in p.stdout and not missing.parent.exists()  # refused before the first step


def test_a_model_too_large_for_memory_is_one_line_naming_the_model():
    line = one_line_exit_2(armin("train", "--task", "copy", "--hidden-size", "10000000", "--steps", "1", "--quiet"))
    assert "model: armin/reference/hidden/armin/gumbel(H=10000000,N=50,W=32) does not fit in memory on cpu" in line
    assert "GiB" in line and "reduce hidden_size" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a torch without a usable GPU")
def test_cuda_without_a_gpu_is_one_line_about_the_device():
    line = one_line_exit_2(armin("train", *TINY, "--device", "cuda"))
    assert "train.device: 'cuda' needs a GPU, but" in line and "use device 'cpu'" in line


def test_binary_config_file_is_one_line(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_bytes(b"seed = 1\n\xd0\x00\xff\xfe binary")
    line = one_line_exit_2(armin("train", "--config", str(cfg)))
    assert line.startswith(f"armin: error: {cfg}: not a UTF-8 text file ("), line
