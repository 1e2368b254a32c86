"""Seeds on demand: the adaptive design's spec and CLI, the planning rule, and ablations on real Ray.

The rule is pinned on hand-made rows (no Ray, milliseconds). The end-to-end runs use two kinds
of arms whose verdicts are known by construction, so they are deterministic:
- n_slots = 16 against n_slots = 2 on `read_entropy`: the entropy of a read over 2 slots is at
  most ln 2 = 0.69, over 16 slots about 2.6 at this budget, so every seed's difference has the
  same sign and the comparison is "better" as soon as the sign-flip test can say so;
- an arm identical to the baseline (`allow_identical_arms`, an A/A design): with few pairs it can be neither better (the sign-flip test
  needs about 8 pairs at this family's level) nor equivalent (the seed guard needs about 15), so
  it keeps asking for seeds up to max_seeds.
"""

import copy
import json
import os
import signal
import sqlite3
import subprocess

import pandas as pd
import pytest
from spec_files import dump, write
from test_ablation import TINY
from test_study_cli import ARMIN, start, wait_for

from armin.cli.main import main
from armin.errors import ConfigError
from armin.orchestration.ablation_spec import (
    DEFAULT_FIRST_ROUND,
    contract_hash,
    load_ablation,
    parse_ablation,
    until_settled,
)
from armin.orchestration.driver import Driver
from armin.orchestration.executors import RayExecutor
from armin.orchestration.plans import AblationPlan
from armin.orchestration.testing import Fault, FaultyExecutor
from armin.seeding import derive_seed
from armin.stats import SequentialDesign, compare_arms, plan_seeds
from armin.storage import LOST_BY_DRIVER, Database, Study, Trial, TrialState, encode_value

#: Two arms that never settle within 6 seeds (see the module docstring).
TWINS = {
    **{k: copy.deepcopy(v) for k, v in TINY.items() if k not in ("factors", "design")},
    "extra_arms": {"base": {"model.n_slots": 2}, "same": {"model.n_slots": 2}},
    "design": {"baseline": "base", "seeds": "adaptive", "first_round": 2, "step": 2, "max_seeds": 6,
               "max_retries": 1, "allow_identical_arms": True},
}
#: A clear difference (more slots), an arm identical to the baseline, and the baseline.
CLEAR = {
    **{k: copy.deepcopy(v) for k, v in TINY.items() if k not in ("factors", "design", "objective")},
    "factors": {"model.n_slots": [2, 16]},
    "extra_arms": {"same": {"model.n_slots": 2}},
    "design": {"baseline": {"model.n_slots": 2}, "seeds": "adaptive", "first_round": 8, "step": 4,
               "max_seeds": 12, "max_retries": 1, "allow_identical_arms": True},
    "objective": {"metric": "read_entropy", "direction": "maximize", "rope": 0.1},
}


def with_design(data, **design):
    data = copy.deepcopy(data)
    data["design"] = {**data["design"], **design}
    for key in [k for k, v in design.items() if v is None]:
        del data["design"][key]
    return data


def run(tmp_path, data, spec=None, **kw):
    """Run the ablation `data` (or `spec`, parsed from it and changed) in-process; its rows as tuples."""
    path = write(tmp_path, data, "abl.toml")
    db = Database.open(tmp_path / "armin.db")
    seen = []
    progress = Driver(AblationPlan(spec or load_ablation(path)), path.read_text(), db,
                      on_progress=lambda p: seen.append(p.design), **kw).run()
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "abl")
        rows = [(t.id, t.arm, t.replicate, t.seed, t.state, t.attempt, t.retry_of_id) for t in study.trials]
        return rows, study.status, json.loads(study.spec_json), progress, seen


def results(rows):
    """(arm, replicate) of every attempt that is a result, sorted."""
    return sorted((arm, rep) for _, arm, rep, _, state, *_ in rows if state.counts_as_result())


# ---------------------------------------------------------------- the spec and the CLI


def test_adaptive_spec_stores_its_design_and_every_candidate_seed_in_run_order(tmp_path):
    spec = parse_ablation(dump(TWINS), "a.toml")
    assert spec.sequential == SequentialDesign(first_round=2, step=2, max_seeds=6)
    fixed = parse_ablation(dump(with_design(TWINS, seeds=6, first_round=None, step=None, max_seeds=None)), "f.toml")
    assert spec.seeds == fixed.seeds == tuple(derive_seed(TWINS["seed"], "replicate", r) for r in range(6))
    stored = json.loads(AblationPlan(spec).spec_json())
    assert stored["sequential"] == {"first_round": 2, "step": 2, "max_seeds": 6}
    assert stored["seeds"] == list(spec.seeds)
    assert json.loads(AblationPlan(fixed).spec_json())["sequential"] is None
    defaults = parse_ablation(dump(with_design(TWINS, first_round=None, step=None, max_seeds=12)), "d.toml")
    assert defaults.sequential == SequentialDesign(first_round=10, step=5, max_seeds=12)


@pytest.mark.parametrize("design,expected", [
    (dict(max_seeds=None), "design.max_seeds: missing"),
    (dict(max_seeds=1), "design.max_seeds: must be >= first_round (2), got 1"),
    (dict(first_round=1), "design.first_round: at least 2 seeds"),
    (dict(step=0), "design.step: must be >= 1, got 0"),
    (dict(max_seeds="many"), "design.max_seeds: expected an integer, got 'many'"),
    (dict(step=1.5), "design.step: expected an integer"),
    (dict(seeds=3), "design.max_seeds: only applies to seeds = \"adaptive\" (this spec has seeds = 3)"),
    (dict(seeds="auto"), "design.seeds: expected a count (e.g. 5), a list of integer seeds or \"adaptive\""),
])
def test_bad_adaptive_designs_are_one_line_naming_the_key(tmp_path, design, expected):
    path = write(tmp_path, with_design(TWINS, **design), "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_ablation(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message, message


def test_the_design_is_not_part_of_the_contract(tmp_path):
    base = contract_hash(parse_ablation(dump(TWINS), "a.toml"))
    for changed in (with_design(TWINS, max_seeds=20), with_design(TWINS, first_round=4, step=1),
                    with_design(TWINS, seeds=2, first_round=None, step=None, max_seeds=None)):
        assert contract_hash(parse_ablation(dump(changed), "b.toml")) == base


def test_until_settled_makes_the_fixed_seeds_the_start_of_the_candidates():
    fixed = parse_ablation(dump(with_design(TWINS, seeds=3, first_round=None, step=None, max_seeds=None)), "f.toml")
    spec = until_settled(fixed, max_seeds=30)
    assert spec.seeds[:3] == fixed.seeds and len(spec.seeds) == 30 and len(set(spec.seeds)) == 30
    assert spec.sequential == SequentialDesign(first_round=DEFAULT_FIRST_ROUND, step=5, max_seeds=30)
    assert spec.seeds == parse_ablation(dump(with_design(TWINS, max_seeds=30)), "a.toml").seeds
    assert until_settled(fixed, max_seeds=6).sequential.first_round == 6  # capped at max_seeds
    listed = parse_ablation(dump(with_design(TWINS, seeds=[5, 7], first_round=None, step=None, max_seeds=None)), "l")
    assert until_settled(listed, max_seeds=4).seeds[:2] == (5, 7)
    adaptive = parse_ablation(dump(TWINS), "a.toml")
    grown = until_settled(adaptive, max_seeds=9)
    assert grown.sequential == SequentialDesign(first_round=2, step=2, max_seeds=9) and grown.seeds[:6] == adaptive.seeds
    for kw, expected in ((dict(), "--until-settled: needs --max-seeds"), (dict(max_seeds=2), "--max-seeds: must be at "
                         "least the spec's 3 seeds, got 2"), (dict(max_seeds=8, first_round=1), "--first-round: at "
                         "least 2"), (dict(max_seeds=8, step=0), "--step: must be >= 1")):
        with pytest.raises(ConfigError, match=expected):
            until_settled(fixed, **kw)


@pytest.mark.parametrize("flags,expected", [
    (["--until-settled"], "--until-settled: needs --max-seeds"),
    (["--max-seeds", "8"], "--max-seeds: only applies with --until-settled"),
    (["--until-settled", "--max-seeds", "1"], "--max-seeds: must be at least the spec's 2 seeds, got 1"),
])
def test_until_settled_flags_are_checked_before_the_database_is_touched(tmp_path, capsys, flags, expected):
    spec = write(tmp_path, with_design(TWINS, seeds=2, first_round=None, step=None, max_seeds=None), "f.toml")
    db_path = tmp_path / "armin.db"
    assert main(["ablation", "run", str(spec), "--db", str(db_path), *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not db_path.exists()


def test_a_bad_adaptive_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    spec, db_path = write(tmp_path, with_design(TWINS, max_seeds=None), "bad.toml"), tmp_path / "armin.db"
    assert main(["ablation", "run", str(spec), "--db", str(db_path)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: design.max_seeds: missing" in err and len(err.strip().splitlines()) == 1
    assert not db_path.exists()


# ---------------------------------------------------------------- the planning rule, on hand-made rows


def rows_of(plan, outcomes, *, max_attempt=None):
    """Trial rows for {(arm, replicate): state or (state, value, attempt, reason)}, numbered in order."""
    ids = {a.name: i for i, a in enumerate(plan.spec.arms)}
    out = []
    for number, ((arm, rep), what) in enumerate(outcomes.items()):
        state, value, attempt, reason = what if isinstance(what, tuple) else (what, 1.0, 1, None)
        v, kind = encode_value(value if state == TrialState.COMPLETE else None)
        out.append(Trial(number=number, arm=arm, config_id=ids[arm], replicate=rep, seed=plan.spec.seeds[rep],
                         state=state, attempt=attempt, failure_reason=reason, value=v, value_kind=kind))
    return out


def planned(plan, rows):
    per_arm = {}
    for slot in plan.expected_slots(rows):
        per_arm.setdefault(slot.arm, []).append(slot.replicate)
    return per_arm


def round_one(plan, n, values):
    """Every arm's first n replicates complete, arm `a` scoring values[a](replicate)."""
    return {(a.name, r): (TrialState.COMPLETE, values[a.name](r), 1, None) for a in plan.spec.arms for r in range(n)}


CLEAR_VALUES = {"n_slots=2": lambda r: 0.6 + 0.01 * r, "n_slots=16": lambda r: 2.6 + 0.01 * (r % 3),
                "same": lambda r: 0.6 + 0.01 * r}


def test_an_empty_ablation_plans_the_first_round_of_every_arm_baseline_first():
    plan = AblationPlan(parse_ablation(dump(CLEAR), "c.toml"))
    slots = plan.expected_slots([])
    assert [s.arm for s in slots[:8]] == ["n_slots=2"] * 8
    assert planned(plan, []) == {arm: list(range(8)) for arm in ("n_slots=2", "n_slots=16", "same")}


def test_only_unsettled_comparisons_and_the_baseline_get_the_next_round():
    plan = AblationPlan(parse_ablation(dump(CLEAR), "c.toml"))
    first = round_one(plan, 8, CLEAR_VALUES)
    assert planned(plan, rows_of(plan, first)) == {"n_slots=2": list(range(12)), "n_slots=16": list(range(8)),
                                                   "same": list(range(12))}
    done = round_one(plan, 12, CLEAR_VALUES)
    del done[("n_slots=16", 8)], done[("n_slots=16", 9)], done[("n_slots=16", 10)], done[("n_slots=16", 11)]
    assert planned(plan, rows_of(plan, done)) == planned(plan, rows_of(plan, first))  # max_seeds: nothing more
    df, _ = plan.outcomes(rows_of(plan, done))
    assert plan_seeds(df, baseline="n_slots=2", direction="maximize", rope=0.1, max_seeds=12, first_round=8,
                      step=4) == {}


def test_slots_running_queued_or_due_for_a_retry_are_planned_once():
    plan = AblationPlan(parse_ablation(dump(CLEAR), "c.toml"))
    outcomes = round_one(plan, 8, CLEAR_VALUES)
    outcomes[("n_slots=2", 8)] = TrialState.COMPLETE
    outcomes[("n_slots=2", 9)] = TrialState.RUNNING
    outcomes[("same", 8)] = (TrialState.LOST, None, 1, LOST_BY_DRIVER)  # a dead driver's: always re-run
    outcomes[("same", 9)] = (TrialState.LOST, None, 1, "WorkerCrashedError: died")  # unexplained: one retry left
    rows = rows_of(plan, outcomes)
    assert planned(plan, rows) == {"n_slots=2": list(range(12)), "n_slots=16": list(range(8)),
                                   "same": list(range(12))}
    df, scheduled = plan.outcomes(rows)
    assert len(df) == 25 and scheduled["same"] == set(range(10))  # the lost and the failed slots are not results


def test_arms_that_finish_before_the_baseline_plan_the_first_round_only():
    plan = AblationPlan(parse_ablation(dump(CLEAR), "c.toml"))
    outcomes = {(a, r): TrialState.RUNNING for a in ("n_slots=2", "n_slots=16", "same") for r in range(8)}
    outcomes[("n_slots=16", 0)] = outcomes[("same", 3)] = TrialState.COMPLETE  # many workers, a faster arm
    assert planned(plan, rows_of(plan, outcomes)) == planned(plan, [])


def test_a_slot_failed_for_good_is_an_outcome_and_the_plan_goes_on():
    plan = AblationPlan(parse_ablation(dump(TWINS), "t.toml"))
    outcomes = {(arm, r): TrialState.COMPLETE for arm in ("base", "same") for r in range(2)}
    outcomes[("same", 1)] = (TrialState.FAILED, None, 1, "RuntimeError: boom")  # deterministic: final at once
    rows = rows_of(plan, outcomes)
    df, _ = plan.outcomes(rows)
    assert df.set_index(["arm", "seed"]).loc[("same", 1), "state"] == "failed"
    assert planned(plan, rows) == {"base": [0, 1, 2, 3], "same": [0, 1, 2, 3]}
    outcomes[("same", 1)] = (TrialState.LOST, None, 1, "WorkerCrashedError: died")  # a retry is due: wait for it
    assert planned(plan, rows_of(plan, outcomes)) == {"base": [0, 1], "same": [0, 1]}


def test_outcomes_are_paired_in_run_order():
    plan = AblationPlan(parse_ablation(dump(TWINS), "t.toml"))
    df, _ = plan.outcomes(rows_of(plan, {(arm, r): TrialState.COMPLETE for arm in ("base", "same") for r in (1, 0)}))
    assert sorted(df["seed"]) == [0, 0, 1, 1]  # the candidate index, not the seed (whose order is a hash's)


# ---------------------------------------------------------------- on Ray


def test_adaptive_ablation_settles_the_clear_comparison_early_and_grows_only_the_unsettled(ray_cluster, tmp_path):
    rows, status, stored, progress, seen = run(tmp_path, CLEAR)
    per_arm = pd.Series([arm for _, arm, *_ in rows]).value_counts().to_dict()
    assert per_arm == {"n_slots=2": 12, "same": 12, "n_slots=16": 8}  # 32 runs where a fixed design makes 36
    assert status == "complete" and progress.done == progress.total == 32
    assert "round 2/2 | seeds per arm: n_slots=2 12; n_slots=16 8; same 12 (max 12)" in seen
    seeds = stored["seeds"]
    assert all(seed == seeds[rep] for _, _, rep, seed, *_ in rows)  # every arm ran a prefix of the candidates
    db = Database.open(tmp_path / "armin.db", readonly=True)
    with db.session() as s:
        plan = AblationPlan(load_ablation(tmp_path / "abl.toml"))
        df, _ = plan.outcomes(Study.find_or_raise_by_name(s, "abl").trials)
    wide = df.pivot(index="seed", columns="arm", values="value")
    assert (wide["same"] == wide["n_slots=2"]).all()  # the premise: one config, one seed, one result
    design = dict(baseline="n_slots=2", direction="maximize", rope=0.1, first_round=8, step=4, max_seeds=12)
    assert plan_seeds(df, **design) == {}
    table = compare_arms(df, sequential=True, **design).set_index("arm")
    assert table.loc["n_slots=16", "verdict"] == "better" and table.loc["n_slots=16", "look"] == 8
    assert table.loc["same", "verdict"] == "inconclusive" and "max_seeds" in table.loc["same", "stop"]


def test_growing_a_finished_adaptive_ablation_runs_only_the_new_slots(ray_cluster, tmp_path):
    fixed = with_design(TWINS, seeds=2, first_round=None, step=None, max_seeds=None)
    first, *_ = run(tmp_path, fixed)
    assert results(first) == [(a, r) for a in ("base", "same") for r in range(2)]
    # --until-settled --max-seeds 4 on the finished fixed ablation: its 2 seeds count, 2 more each
    second, status, stored, *_ = run(tmp_path, fixed, until_settled(load_ablation(write(tmp_path, fixed)), max_seeds=4))
    assert second[:len(first)] == first and status == "complete"
    assert stored["sequential"] == {"first_round": 4, "step": 5, "max_seeds": 4}
    assert results(second[len(first):]) == [(a, r) for a in ("base", "same") for r in (2, 3)]
    # raise max_seeds and add an arm: the old arms get only their new seeds, the new arm all of its own
    grown = with_design(TWINS, first_round=4, max_seeds=6)
    grown["extra_arms"]["same2"] = {"model.n_slots": 2}
    third, status, *_ = run(tmp_path, grown)
    assert third[:len(second)] == second and status == "complete"
    assert results(third[len(second):]) == sorted([(a, r) for a in ("base", "same") for r in (4, 5)]
                                                  + [("same2", r) for r in range(6)])


def test_a_trial_that_raises_fails_once_and_the_adaptive_plan_goes_on_without_calling_it_complete(ray_cluster,
                                                                                                  tmp_path):
    rows, status, _, progress, _ = run(tmp_path, with_design(TWINS, max_seeds=4),
                                       executor=FaultyExecutor(RayExecutor(), {4: Fault("raise", 10)}))
    failed = [r for r in rows if r[4] == TrialState.FAILED]
    assert len(failed) == 1 and failed[0][2] == 2  # the first trial of the second round
    assert not [r for r in rows if r[6] == failed[0][0]] and len(rows) == 8  # deterministic: never retried
    slots = [(a, r) for a in ("base", "same") for r in range(4)]
    assert results(rows) == sorted(set(slots) - {failed[0][1:3]})  # the plan scored it as failed and went on
    assert status == "failed" and progress.failed == progress.failed_for_good == 1


def test_sigkilled_adaptive_driver_resumes_mid_round_without_losing_or_duplicating_slots(ray_cluster, tmp_path):
    slow = with_design(TWINS, seeds=2, first_round=None, step=None, max_seeds=None)
    slow["train"] = {**slow["train"], "steps": 500, "eval_every": 250}  # about 0.5 s: long enough to catch
    spec, db_path = write(tmp_path, slow, "slow.toml"), tmp_path / "armin.db"
    driver = start(["ablation", "run", str(spec), "--until-settled", "--max-seeds", "6", "--first-round", "2",
                    "--step", "2", "--db", str(db_path), "--address", ray_cluster, "--max-parallel", "2"])

    def query(sql):
        if not db_path.exists():
            return []
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []
        finally:
            con.close()

    wait_for(lambda: query("SELECT 1 FROM armin_trials WHERE state = 'RUNNING' AND replicate >= 2"), timeout=180)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    at_kill = query("SELECT id, arm, replicate, state FROM armin_trials ORDER BY number")
    assert max(rep for _, _, rep, _ in at_kill) < 4  # killed in the second round

    resumed = subprocess.run([*ARMIN, "ablation", "resume", "abl", "--db", str(db_path), "--address", ray_cluster],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "round 3/3 | seeds per arm: base 6; same 6 (max 6)" in resumed.stdout + resumed.stderr
    db = Database.open(db_path, readonly=True)
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "abl")
        rows = study.trials
        assert sorted((t.arm, t.replicate) for t in rows if t.state.counts_as_result()) == \
               [(a, r) for a in ("base", "same") for r in range(6)]  # every slot once, none twice
        lost = [t for t in rows if t.state == TrialState.LOST]
        running_at_kill = {i for i, _, _, state in at_kill if state == "RUNNING"}
        assert {t.id for t in lost} == running_at_kill and all(t.failure_reason == LOST_BY_DRIVER for t in lost)
        assert all(any(t.retry_of_id == x.id for t in rows) for x in lost) and len(rows) == 12 + len(lost)
        new = [t for t in rows if t.id not in {i for i, *_ in at_kill}]
        assert {t.replicate for t in new} >= {4, 5}  # the resumed driver planned the third round itself
        assert study.status == "complete" and json.loads(study.spec_json)["sequential"] == \
               {"first_round": 2, "step": 2, "max_seeds": 6}
