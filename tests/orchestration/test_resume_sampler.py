"""A resumed search continues its sampler (issue 13, item 2): no configuration repeats an earlier one.

Real searches on the in-process 2-CPU Ray cluster: stopped after two configurations (by `--force`
growing `n_trials`, or by Ctrl-C mid-study), then resumed to four. The resumed configurations are
new draws, a fresh run of the same spec still samples the same first configurations, and Optuna's
tables agree with `armin_trials` (one Optuna trial per row, the same params).
"""

import copy
import json

import optuna
import pytest
from spec_files import write
from test_study import TINY

from armin.orchestration.driver import Driver
from armin.orchestration.plans import SearchPlan
from armin.orchestration.spec import load_spec, make_sampler, resume_seed
from armin.storage import Database, Study, TrialState

#: test_study's tiny search, resumable: one seed per configuration, 4 configurations, 10 steps
SPEC = {
    **copy.deepcopy(TINY),
    "name": "resumed",
    "goal": "Does a resumed search sample new configurations?",
    "train": {**TINY["train"], "steps": 10},
    "search": {**TINY["search"], "n_trials": 4, "seeds_per_config": 1},
    # a continuous parameter: two independent draws never coincide, two replays of one stream always do
    "space": {"model.temperature.start": {"low": 0.1, "high": 2.0, "log": True},
              "model.cell": {"choices": ["armin", "lstm"]}},
}


def spec_dict(**search):
    data = copy.deepcopy(SPEC)
    data["search"].update(search)
    return data


def drive(tmp_path, data, db_name="armin.db", **kwargs):
    path = write(tmp_path, data, f"{db_name}.toml")
    db = Database.open(tmp_path / db_name)
    return db, Driver(SearchPlan(load_spec(path)), path.read_text(), db, max_parallel=1, **kwargs)


def configs(db) -> dict[int, dict]:
    """config_id -> its params, from armin_trials."""
    with db.session() as s:
        return {t.config_id: json.loads(t.params_json) for t in Study.find_or_raise_by_name(s, "resumed").trials}


def assert_optuna_agrees(db):
    with db.session() as s:
        rows = [(t.optuna_trial_id, json.loads(t.params_json), t.state)
                for t in Study.find_or_raise_by_name(s, "resumed").trials]
    otrials = {t._trial_id: t for t in optuna.load_study(study_name="resumed", storage=db.url).trials}
    assert len(otrials) == len(rows)
    assert sorted(otrials) == sorted(i for i, _, _ in rows)
    for trial_id, params, state in rows:
        assert otrials[trial_id].params == params
        if state == TrialState.COMPLETE:
            assert otrials[trial_id].state == optuna.trial.TrialState.COMPLETE


def assert_all_distinct(params: dict[int, dict]):
    values = [p["model.temperature.start"] for _, p in sorted(params.items())]
    assert len(set(values)) == len(values), values


def test_forced_resume_samples_new_configurations_and_stays_reproducible(ray_cluster, tmp_path):
    db, driver = drive(tmp_path, spec_dict(n_trials=2))
    driver.run()
    first = configs(db)
    assert sorted(first) == [0, 1]
    db, driver = drive(tmp_path, spec_dict(n_trials=4), force=True)
    progress = driver.run()
    resumed = configs(db)
    assert sorted(resumed) == [0, 1, 2, 3] and progress.done == 4
    assert {c: resumed[c] for c in (0, 1)} == first  # the earlier configurations are kept
    assert_all_distinct(resumed)  # 2 and 3 are new draws, not 0 and 1 again
    assert_optuna_agrees(db)
    # a fresh run of the same spec samples the same first configurations (the spec's seed itself)
    fresh_db, driver = drive(tmp_path, spec_dict(n_trials=4), db_name="fresh.db")
    driver.run()
    fresh = configs(fresh_db)
    assert {c: fresh[c] for c in (0, 1)} == first
    assert_all_distinct(fresh)
    assert_optuna_agrees(fresh_db)


def test_interrupted_tpe_search_resumes_with_new_configurations(ray_cluster, tmp_path):
    """Ctrl-C after two results (config 1's first seed cancelled), then a plain resume: TPE's startup
    trials come from its inner RandomSampler, which used to restart from the spec's seed."""
    data = spec_dict(sampler="tpe", seeds_per_config=2)

    def stop(progress):
        if progress.done >= 2:
            raise KeyboardInterrupt

    db, driver = drive(tmp_path, data, on_progress=stop)
    with pytest.raises(KeyboardInterrupt):
        driver.run()
    before = configs(db)
    assert sorted(before) == [0, 1]
    db, driver = drive(tmp_path, data)
    progress = driver.run()
    after = configs(db)
    assert sorted(after) == [0, 1, 2, 3] and progress.done == progress.total == 8
    assert {c: after[c] for c in (0, 1)} == before
    assert_all_distinct(after)
    assert_optuna_agrees(db)
    with db.session() as s:
        rows = Study.find_or_raise_by_name(s, "resumed").trials
        results = sorted((t.config_id, t.replicate) for t in rows if t.state.counts_as_result())
        # replicates of one configuration share its params
        by_config = {}
        for t in rows:
            by_config.setdefault(t.config_id, set()).add(t.params_json)
    assert results == [(c, r) for c in range(4) for r in range(2)]
    assert all(len(p) == 1 for p in by_config.values())


def test_the_seed_rule(tmp_path):
    spec = load_spec(write(tmp_path, SPEC, "spec.toml"))
    assert resume_seed(spec, 0) == 0  # fresh: the spec's sampler_seed
    seeds = {resume_seed(spec, n) for n in range(1, 50)}
    assert len(seeds) == 49 and 0 not in seeds
    assert resume_seed(spec, 7) == resume_seed(spec, 7)  # from the database alone
    grid = load_spec(write(tmp_path, {**SPEC, "search": {**SPEC["search"], "sampler": "grid", "n_trials": 2},
                                      "space": {"model.cell": {"choices": ["armin", "lstm"]}}}, "grid.toml"))
    assert resume_seed(grid, 5) == 0  # the grid's order must not change: its grid ids refer to it
    assert isinstance(make_sampler(spec, 3), optuna.samplers.RandomSampler)
