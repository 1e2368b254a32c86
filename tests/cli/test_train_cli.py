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
    (["--cell", "gru"], "--cell: invalid choice: 'gru' (choose from 'armin', 'lstm')"),
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
