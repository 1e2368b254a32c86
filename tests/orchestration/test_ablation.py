"""Ablations: spec validation, the paired design, running arms x seeds on Ray, growing a finished ablation."""

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
from spec_files import write

import armin.training.trainer as trainer_module
from armin.errors import ConfigError
from armin.model import build_model
from armin.orchestration.ablation_spec import build_arm_run, contract_hash, load_ablation
from armin.orchestration.driver import Driver, StudyChanged
from armin.orchestration.executors import RayExecutor
from armin.orchestration.plans import AblationPlan
from armin.orchestration.testing import Fault, FaultyExecutor
from armin.seeding import INIT, derive_seed
from armin.storage import Database, Study, TrialState
from armin.tasks import build_task
from armin.training import train

ABLATIONS = Path(__file__).resolve().parents[2] / "ablations"

TINY = {
    "name": "abl",
    "goal": "Does the ablation runner pair arms by seed?",
    "seed": 2,
    "task": {"name": "copy", "max_len": 3},
    "model": {"hidden_size": 8, "n_slots": 4, "r_size": 4},
    "optimizer": {"name": "rmsprop", "lr": 1e-3},
    "train": {"steps": 20, "batch_size": 4, "eval_every": 10, "eval_sequences": 8, "eval_batch_size": 8},
    "factors": {"model.cell": ["armin", "lstm"]},
    "design": {"baseline": {"model.cell": "armin"}, "seeds": [11, 12], "max_retries": 1},
    "objective": {"metric": "eval_loss", "direction": "minimize", "rope": 0.01},
}


def spec(**changes):
    data = copy.deepcopy(TINY)
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def run(tmp_path, data, **kw):
    path = write(tmp_path, data, "abl.toml")
    db = Database.open(tmp_path / "armin.db")
    Driver(AblationPlan(load_ablation(path)), path.read_text(), db, **kw).run()
    with db.session() as s:
        return db, [(t.arm, t.seed, t.state, t.attempt, t.retry_of_id, t.id) for t in
                    Study.find_or_raise_by_name(s, "abl").trials]


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_ablations_load(path):
    s = load_ablation(path)
    assert len(s.arms) >= 2 and s.baseline in [a.name for a in s.arms] and len(s.seeds) >= 2


def test_factorial_arms_and_subset():
    s = load_ablation(ABLATIONS / "copy_quick.toml")
    assert len(s.arms) == 4 and s.baseline == "addressing=hidden, cell=armin"
    data = spec(factors={"model.cell": ["armin", "lstm"], "model.addressing": ["hidden", "tardis"]},
                design={"baseline": {"model.cell": "armin", "model.addressing": "hidden"},
                        "arms": [{"model.cell": "armin", "model.addressing": "hidden"},
                                 {"model.cell": "lstm", "model.addressing": "tardis"}]})
    from armin.orchestration.ablation_spec import parse_ablation
    from spec_files import dump

    assert [a.name for a in parse_ablation(dump(data), "x.toml").arms] == \
           ["cell=armin, addressing=hidden", "cell=lstm, addressing=tardis"]


@pytest.mark.parametrize("change,expected", [
    (dict(factors={"model.cell": ["armin", "gru"]}), 'factors."model.cell": level \'gru\''),
    (dict(factors={"optimizer.lr": [1e-3, 1e-4]}), "[optimizer] is fixed by design"),
    (dict(factors={"model.colour": ["red", "blue"]}), "unknown component"),
    (dict(factors={"model.cell": ["armin"]}), "at least 2 levels"),
    (dict(design={"baseline": {"model.cell": "lstm2"}}), "design.baseline"),
    (dict(design={"seeds": 1}), "design.seeds: at least 2 seeds"),
    (dict(design={"seeds": [3, 3]}), "design.seeds"),
    (lambda d: d["objective"].pop("rope"), "objective.rope: missing"),
    (dict(objective={"metric": "accuracy", "direction": "maximize", "rope": 0.1}), "objective.metric"),
    (dict(extra_arms={"big": {"model.hidden_size": 0}}), "extra_arms.big"),
    (dict(colour="red"), "unknown key 'colour'"),
    # non-finite numbers: inf passes every `> 0` check (with eps = inf trials complete and never learn)
    (dict(optimizer={"lr": float("inf")}), "optimizer.lr: must be a finite number, got inf"),
    (dict(optimizer={"eps": float("inf")}), "optimizer.eps: must be a finite number, got inf"),
    (dict(optimizer={"weight_decay": float("nan")}), "optimizer.weight_decay: must be a finite number, got nan"),
    (dict(optimizer={"clip_threshold": float("inf")}), "optimizer.clip_threshold: must be a finite number"),
    (dict(model={"temperature": {"start": float("inf")}}), "model.temperature.start: must be a finite number"),
    (dict(factors={"model.temperature.end": [1.0, float("inf")]}), "level inf: model.temperature.end: must be a "
                                                                     "finite number"),
    # duplicate arms by value, not by spelling
    (dict(factors={"model.temperature.start": [1, 1.0]}),
     'factors."model.temperature.start": levels repeat a value: 1 and 1.0'),
    (dict(factors={"model.hidden_size": [8, 8.0]}), 'factors."model.hidden_size": level 8.0: model.hidden_size: '
                                                    'expected an integer'),
    (dict(seed=-1), "seed: expected an integer >= 0, got -1"),
    (dict(design={"seeds": [-1, 2]}), "design.seeds"),
    (dict(train={"device": "cudafoo"}, resources={"gpus": 1}), "train.device: must be 'cpu', 'cuda' or 'cuda:N'"),
    (dict(name="a" * 5000), "name: at most 100 characters, got 5,000"),
])
def test_bad_ablation_specs_are_one_line_naming_file_and_key(tmp_path, change, expected):
    if callable(change):
        data = spec()
        change(data)
    else:
        data = spec(**change)
    path = write(tmp_path, data, "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_ablation(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message, message


def test_contract_hash_ignores_arms_seeds_and_rope_but_not_the_optimizer(tmp_path):
    base = contract_hash(load_ablation(write(tmp_path, spec(), "a.toml")))
    grown = spec(design={"seeds": [11, 12, 13]}, objective={"rope": 0.5},
                 extra_arms={"wide": {"model.hidden_size": 16}})
    assert contract_hash(load_ablation(write(tmp_path, grown, "b.toml"))) == base
    assert contract_hash(load_ablation(write(tmp_path, spec(optimizer={"lr": 1e-2}), "c.toml"))) != base


# ---------------------------------------------------------------- the paired design


def test_arms_with_one_seed_see_identical_batches_eval_set_and_shared_initial_weights(tmp_path, monkeypatch):
    s = load_ablation(write(tmp_path, spec(extra_arms={"tardis": {"model.addressing": "tardis"}}), "p.toml"))
    seen = {}
    for arm in s.arms:
        log = {"train": [], "eval": []}

        class Spy:  # wraps the real task and records digests of what it hands out
            def __init__(self, task):
                self.task = task

            def __getattr__(self, name):
                return getattr(self.task, name)

            def sample(self, *a):
                b = self.task.sample(*a)
                log["train"].append(hashlib.sha256(b.inputs.numpy().tobytes()).hexdigest())
                return b

            def eval_set(self, *a):
                batches = self.task.eval_set(*a)
                log["eval"] = [hashlib.sha256(b.inputs.numpy().tobytes()).hexdigest() for b in batches]
                return batches

        monkeypatch.setattr(trainer_module, "build_task", lambda cfg: Spy(build_task(cfg)))
        run_cfg = build_arm_run(s, arm, s.seeds[0])
        train(run_cfg)
        task = build_task(run_cfg.task)
        weights = build_model(run_cfg.model, task.input_size, task.output_size,
                              derive_seed(run_cfg.seed, INIT)).state_dict()
        seen[arm.name] = (log, weights, run_cfg)
    (log0, w0, r0), *others = seen.values()
    for log, w, r in others:
        assert log["train"] == log0["train"] and log["eval"] == log0["eval"]
        assert r.optimizer == r0.optimizer and r.train == r0.train and r.task == r0.task
        shared = [k for k in w if k in w0 and w[k].shape == w0[k].shape]
        assert "head.weight" in shared and all(torch.equal(w[k], w0[k]) for k in shared)


# ---------------------------------------------------------------- running


def test_ablation_runs_exactly_arms_x_seeds_paired_by_seed(ray_cluster, tmp_path):
    db, rows = run(tmp_path, spec())
    assert sorted((a, s) for a, s, *_ in rows) == [("cell=armin", 11), ("cell=armin", 12),
                                                    ("cell=lstm", 11), ("cell=lstm", 12)]
    assert all(state == TrialState.COMPLETE for _, _, state, *_ in rows)
    with db.session() as s:
        trials = Study.find_or_raise_by_name(s, "abl").trials
        assert {t.cell for t in trials} == {"armin", "lstm"} and all(t.optuna_trial_id is None for t in trials)
        configs = {t.arm: json.loads(t.config_json) for t in trials}
        assert configs["cell=armin"]["optimizer"] == configs["cell=lstm"]["optimizer"]


def test_growing_a_finished_ablation_runs_only_the_new_trials(ray_cluster, tmp_path):
    _, first = run(tmp_path, spec())
    _, second = run(tmp_path, spec(design={"seeds": [11, 12, 13]}, extra_arms={"wide": {"model.hidden_size": 12}}))
    new = second[len(first):]
    assert second[:len(first)] == first  # nothing re-run
    assert sorted((a, s) for a, s, *_ in new) == [("cell=armin", 13), ("cell=lstm", 13), ("wide", 11),
                                                   ("wide", 12), ("wide", 13)]
    with pytest.raises(StudyChanged, match="optimizer"):
        run(tmp_path, spec(optimizer={"lr": 1e-2}))


def test_a_trial_that_raises_fails_once_and_the_ablation_ends_failed_not_complete(ray_cluster, tmp_path):
    db, rows = run(tmp_path, spec(), executor=FaultyExecutor(RayExecutor(), {0: Fault("raise", at_step=10)}))
    failed = [r for r in rows if r[2] == TrialState.FAILED]
    assert len(failed) == 1 and len(rows) == 4  # a deterministic failure: never retried
    assert sum(r[2] == TrialState.COMPLETE for r in rows) == 3
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "abl")
        assert study.status == "failed"
        assert "injected fault" in study.trials[0].failure_reason
