"""The study engine in-process on a real 2-CPU Ray cluster, real Optuna and real SQLite files.

Faults are real: a worker that raises, a worker process SIGKILLed mid-trial (`Fault`, injected by
trial number), and a learning rate large enough to make the loss NaN.
"""

import copy
import json

import optuna
import pytest
from spec_files import write

from armin.orchestration.driver import Driver
from armin.orchestration.executors import RayExecutor
from armin.orchestration.plans import SearchPlan
from armin.orchestration.spec import load_spec
from armin.orchestration.testing import Fault, FaultyExecutor
from armin.storage import LOST_BY_DRIVER, Database, Study, Trial, TrialState

TINY = {
    "name": "tiny",
    "goal": "Does the engine record every outcome?",
    "seed": 1,
    "task": {"name": "copy", "max_len": 3},
    "model": {"hidden_size": 8, "n_slots": 4, "r_size": 4},
    "optimizer": {"name": "rmsprop", "lr": 1e-3},
    "train": {"steps": 20, "batch_size": 4, "eval_every": 10, "eval_sequences": 8, "eval_batch_size": 8},
    "search": {"n_trials": 3, "seeds_per_config": 2, "sampler": "random", "sampler_seed": 0, "pruner": "none",
               "max_retries": 1},
    "objective": {"metric": "eval_loss", "direction": "minimize"},
    "resources": {"cpus": 1, "gpus": 0},
    "space": {"model.addressing": {"choices": ["hidden", "input_only"]},
              "model.cell": {"choices": ["armin", "lstm"]}},
}


def spec_dict(**sections):
    data = copy.deepcopy(TINY)
    for key, value in sections.items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
    return data


def run_study(tmp_path, data, *, faults=None, db_name="armin.db"):
    path = write(tmp_path, data, "spec.toml")
    db = Database.open(tmp_path / db_name)
    executor = FaultyExecutor(RayExecutor(), faults) if faults else None  # faults ride in the jobs Ray runs
    progress = Driver(SearchPlan(load_spec(path)), path.read_text(), db, executor=executor).run()
    return db, progress


def trials(db, name="tiny"):
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, name)
        return [(t, sorted((m.step, m.name) for m in t.metrics), t.cost) for t in study.trials]


def test_small_study_end_to_end(ray_cluster, tmp_path):
    db, progress = run_study(tmp_path, spec_dict())
    rows = trials(db)
    assert progress.done == progress.total == 6
    assert [t.state for t, _, _ in rows] == [TrialState.COMPLETE] * 6
    assert sorted(t.number for t, _, _ in rows) == list(range(6))
    # every (config, replicate) exactly once; replicates share params, differ in seed
    slots = sorted((t.config_id, t.replicate) for t, _, _ in rows)
    assert slots == [(c, r) for c in range(3) for r in range(2)]
    by_config = {}
    for t, _, _ in rows:
        by_config.setdefault(t.config_id, []).append(t)
    for pair in by_config.values():
        assert pair[0].params_json == pair[1].params_json and pair[0].seed != pair[1].seed
    for t, metrics, cost in rows:
        assert {(10, "eval_loss"), (20, "eval_loss"), (20, "read_entropy")} <= set(metrics)
        assert cost.n_params > 0 and cost.time_per_step_s > 0
        assert t.value is not None and t.worker_host and t.device == "cpu"
        assert json.loads(t.config_json)["model"]["addressing"] == t.addressing
    # Optuna's tables live in the same file and agree with ours
    ostudy = optuna.load_study(study_name="tiny", storage=db.url)
    complete = ostudy.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 6
    assert sorted(t.value for t in complete) == sorted(t.value for t, _, _ in rows)
    with db.session() as s:
        assert Study.find_or_raise_by_name(s, "tiny").status == "complete"


def test_rerunning_a_finished_study_adds_nothing(ray_cluster, tmp_path):
    db, _ = run_study(tmp_path, spec_dict())
    before = [(t.number, t.state) for t, _, _ in trials(db)]
    run_study(tmp_path, spec_dict())
    assert [(t.number, t.state) for t, _, _ in trials(db)] == before


def pruned_search():
    """Eight configurations, some tiny: the median pruner stops some of them before their 60 steps."""
    return spec_dict(train={"steps": 60, "eval_every": 10},
                     search={"n_trials": 8, "seeds_per_config": 1, "pruner": "median", "n_startup_trials": 2,
                             "n_warmup_steps": 0},
                     space={"model.hidden_size": {"choices": [2, 16]},
                            "model.addressing": {"choices": ["hidden", "input_only"]}})


def test_pruner_stops_bad_trials_early(ray_cluster, tmp_path):
    db, progress = run_study(tmp_path, pruned_search())
    rows = trials(db)
    pruned = [(t, m) for t, m, _ in rows if t.state == TrialState.PRUNED]
    assert progress.done == 8 and pruned
    for t, metrics in pruned:
        assert max(step for step, _ in metrics) < 60  # stopped before the budget
        assert t.value is not None  # the value it was pruned at
    ostudy = optuna.load_study(study_name="tiny", storage=db.url)
    assert len(ostudy.get_trials(states=[optuna.trial.TrialState.PRUNED])) == len(pruned)


def test_trial_that_raises_is_failed_with_traceback_and_the_study_goes_on(ray_cluster, tmp_path):
    db, progress = run_study(tmp_path, spec_dict(), faults={1: Fault("raise", at_step=10)})
    rows = {t.number: t for t, _, _ in trials(db)}
    failed = rows[1]
    assert failed.state == TrialState.FAILED
    assert "injected fault" in failed.failure_reason and "Traceback" in failed.traceback
    assert "RuntimeError" in failed.traceback
    assert [t.state for n, t in rows.items() if n != 1] == [TrialState.COMPLETE] * 5
    assert len(rows) == 6  # a raising trial is not retried
    assert progress.failed == 1 and progress.done == 5


def test_diverged_trials_are_results_and_are_not_retried(ray_cluster, tmp_path):
    data = spec_dict(model={"formulation": "paper"},
                     optimizer={"name": "adam", "lr": 1e37, "clip": "none"},
                     search={"n_trials": 2, "seeds_per_config": 1})
    db, progress = run_study(tmp_path, data)
    rows = [t for t, _, _ in trials(db)]
    assert [t.state for t in rows] == [TrialState.DIVERGED] * 2
    assert all(t.diverged_step == 2 and t.attempt == 1 for t in rows)
    assert progress.done == 2 and progress.diverged == 2


def test_killed_worker_is_lost_and_rerun_linked_to_its_attempt(ray_cluster, tmp_path):
    db, progress = run_study(tmp_path, spec_dict(search={"n_trials": 2, "seeds_per_config": 1}),
                             faults={0: Fault("kill", at_step=10)})
    rows = {t.number: t for t, _, _ in trials(db)}
    lost = rows[0]
    assert lost.state == TrialState.LOST and "Worker" in lost.failure_reason
    retry = next(t for t in rows.values() if t.retry_of_id == lost.id)
    assert retry.state == TrialState.COMPLETE and retry.attempt == 2
    assert (retry.config_id, retry.replicate, retry.seed, retry.params_json) == \
           (lost.config_id, lost.replicate, lost.seed, lost.params_json)
    assert progress.done == 2 and progress.lost == 1


def test_worker_lost_beyond_the_retry_limit_stays_lost(ray_cluster, tmp_path):
    data = spec_dict(search={"n_trials": 1, "seeds_per_config": 1, "max_retries": 1})
    db, progress = run_study(tmp_path, data, faults={0: Fault("kill", 10), 1: Fault("kill", 10)})
    rows = [t for t, _, _ in trials(db)]
    assert [(t.state, t.attempt) for t in rows] == [(TrialState.LOST, 1), (TrialState.LOST, 2)]
    assert rows[1].retry_of_id == rows[0].id and progress.done == 0


def test_resume_after_driver_death_reruns_running_trials_once(ray_cluster, tmp_path):
    """A driver that died leaves RUNNING rows; the next run marks them lost and re-runs each once."""
    db, _ = run_study(tmp_path, spec_dict(search={"n_trials": 2, "seeds_per_config": 1}))
    with db.session() as s:  # make the database look like a driver died mid-trial
        study = Study.find_or_raise_by_name(s, "tiny")
        last = study.trials[-1]
        last.state, last.value, last.value_kind = TrialState.RUNNING, None, None
        study.status = "running"
    run_study(tmp_path, spec_dict(search={"n_trials": 2, "seeds_per_config": 1}))
    rows = [t for t, _, _ in trials(db)]
    assert [t.state for t in rows] == [TrialState.COMPLETE, TrialState.LOST, TrialState.COMPLETE]
    assert rows[1].failure_reason == LOST_BY_DRIVER and rows[2].retry_of_id == rows[1].id
    results = [(t.config_id, t.replicate) for t in rows if t.state.counts_as_result()]
    assert sorted(results) == [(0, 0), (1, 0)]


def test_changed_spec_is_refused_unless_forced(ray_cluster, tmp_path):
    from armin.orchestration.driver import StudyChanged

    run_study(tmp_path, spec_dict(search={"n_trials": 1, "seeds_per_config": 1}))
    changed = spec_dict(search={"n_trials": 2, "seeds_per_config": 1})
    with pytest.raises(StudyChanged, match="different spec.*--force"):
        run_study(tmp_path, changed)
    path = write(tmp_path, changed, "spec.toml")
    db = Database.open(tmp_path / "armin.db")
    Driver(SearchPlan(load_spec(path)), path.read_text(), db, force=True).run()
    assert len(trials(db)) == 2
