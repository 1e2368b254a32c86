"""Clean trial costs: warm-up timed apart, tensor memory of one step, divergence at step 1 downstream."""

import json
import time

import pandas as pd
import pytest

import armin.training.trainer as trainer_module
from armin.model import ModelConfig, extension
from armin.reporting.ablation import cost_table
from armin.storage import Cost, Database, Study, Trial, TrialState
from armin.tasks import CopyConfig
from armin.training import RunConfig, TrainConfig, train

SLOW_S = 0.4  # what each warm-up step is made to cost


def tiny(steps=8) -> RunConfig:
    return RunConfig(task=CopyConfig(max_len=4), model=ModelConfig(hidden_size=8, n_slots=4, r_size=4),
                     train=TrainConfig(steps=steps, batch_size=4, eval_every=4, eval_sequences=8, eval_batch_size=4))


@pytest.fixture
def one_thread():
    """torch on one thread, as in a one-CPU trial (alone, this test's process would have one per core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_first_steps_are_warmup_timed_apart_and_the_extension_is_loaded_before_them(monkeypatch, one_thread):
    real, seen = trainer_module.training_step, []

    def slow_warmup(*args):  # the real step, plus a delay in the warm-up steps only (a wrapper, not a stand-in)
        step = args[7]
        seen.append((step, extension.status()))
        if step <= trainer_module.WARMUP_STEPS:
            time.sleep(SLOW_S)
        return real(*args)

    monkeypatch.setattr(trainer_module, "training_step", slow_warmup)
    result = train(tiny(steps=8))
    assert result.warmup_steps == trainer_module.WARMUP_STEPS == 3
    assert result.warmup_s >= 3 * SLOW_S
    assert 0 < result.time_per_step_s < SLOW_S  # the 5 timed steps carry none of the delay
    assert 0 < result.cpu_time_per_step_s <= result.time_per_step_s * 1.05  # one thread: CPU time within wall time
    assert result.steps_per_s == pytest.approx(5 / (result.time_per_step_s * 5))
    assert seen[0] == (1, extension.status()) and seen[0][1] != "not loaded yet"  # loaded before step 1


def test_short_runs_keep_timed_steps():
    assert [trainer_module.warmup_steps(n) for n in (1, 2, 3, 4, 6, 100)] == [0, 1, 1, 2, 3, 3]


class NaNLoss:
    """The real task whose loss is NaN from the first step (a wrapper around the real task)."""

    def __init__(self, task):
        self.task = task

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, logits, batch):
        return self.task.loss(logits, batch) * float("nan")


def test_a_run_diverging_at_step_1_records_no_time_and_no_memory_and_the_cost_table_copes(monkeypatch, tmp_path):
    real_build = trainer_module.build_task
    monkeypatch.setattr(trainer_module, "build_task", lambda cfg: NaNLoss(real_build(cfg)))
    result = train(tiny())
    assert (result.status, result.diverged_step, result.steps_done) == ("diverged", 1, 0)
    assert (result.time_per_step_s, result.cpu_time_per_step_s, result.steps_per_s, result.warmup_s,
            result.warmup_steps) == (0.0, 0.0, 0.0, 0.0, 0)
    assert result.peak_memory_bytes is None  # the step stopped at its loss: no full step was measured
    # downstream: the worker's dict goes into the schema as the driver writes it, and the report's cost table reads it
    db = Database.open(tmp_path / "d.db")
    with db.session() as s:
        study = Study(name="d", kind="ablation", goal="g", spec_text="", spec_json="{}", spec_hash="h",
                      optuna_study_name="d")
        for number, arm in enumerate(("base", "other")):
            trial = Trial(number=number, config_id=number, replicate=0, seed=0, state=TrialState.DIVERGED, arm=arm,
                          diverged_step=1)
            trial.cost = Cost.from_run_result(json.loads(json.dumps(result.to_dict())))
            study.trials.append(trial)
        s.add(study)
    db.close()
    from armin.reporting.query import trials

    final = trials(tmp_path / "d.db", "d")
    costs, excluded, source = cost_table(final, ["base", "other"], "base")
    assert source == "trials" and len(excluded) == 2  # no profile; neither run timed a step
    assert costs["time_per_step_ms"].isna().all() and costs["peak_memory_mib"].isna().all()
    assert (costs["speed_verdict"] == "").all() and (costs["speed_pairs"] == 0).all()
    assert pd.api.types.is_integer_dtype(costs["n_params"])
