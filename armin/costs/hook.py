"""The study driver's two cost hooks: before the trials, build the C++ loop on every node; after
them, profile the study's arms in one task with a trial's resources and store the profile. Both
run through the driver's executor (`armin.orchestration.executors`: Ray's nodes, or this process).

Both are best-effort: a node that cannot build runs the Python loop (as `extension.load` says), and
a profile that fails leaves one line on stderr and no profile (the report then says so) -- neither
changes a trial's outcome. Messages go to stderr, as the rest of the driver's human output.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from armin.config import from_mapping, to_mapping
from armin.costs.profile import Profile, profile_arms
from armin.costs.settings import Settings, driver_rounds
from armin.costs.store import save_profile
from armin.costs.warm import cached, prepare
from armin.orchestration.executors.base import ExecutorError
from armin.storage import CostProfile, Trial, TrialState
from armin.training import RunConfig

SEARCH_PROFILED = 3  # a search profiles its best configurations (by mean objective over their seeds)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    """The last line of an executor's error: the original exception's message."""
    return (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]


def before_trials(driver: Any) -> None:
    """Build (or find in the cache) the C++ loop once on every alive node, before any trial starts."""
    if not driver.plan.spec.train.device.startswith("cpu"):
        return  # the C++ loop is the CPU path only
    executor = driver.executor
    nodes = executor.node_names()

    def on_each_node(fn):  # the driver's lease is renewed while waiting: a build can outlast its staleness
        return executor.on_each_node(fn, driver.renew_lease)

    try:
        fresh = sum(not ok for ok in on_each_node(cached))
        if fresh:
            _say(f"armin: building the fused C++ loop on {fresh} of {len(nodes)} node(s) before the first trial "
                 f"(about 40 s; cached afterwards)")
        done = on_each_node(_quiet_prepare)
    except ExecutorError as e:  # e.g. a node left: its trials load the loop themselves
        _say(f"armin: warning: building the fused C++ loop on every node failed ({_first_line(e)}); each trial "
             f"loads it before its clock starts")
        return
    for node, d in zip(nodes, done):
        if d["built"]:
            _say(f"armin: fused C++ loop {d['status']} in {d['seconds']:.1f} s on node {node[:8]}")


def _quiet_prepare() -> dict:
    return prepare(lambda line: None)  # the driver says what happened, from the returned facts


def after_trials(driver: Any) -> None:
    """Profile the study's arms (a search: its best configurations) if it ran anything new or has no profile."""
    with driver.db.session() as s:
        has = s.query(CostProfile.id).filter_by(study_id=driver.study_id).first() is not None
        rows = s.query(Trial).filter_by(study_id=driver.study_id).all()
        runs = profiled_runs(driver.plan, rows)
    rounds = driver_rounds()
    if (has and driver.progress.done == driver.progress.done_at_start) or not runs or rounds == 0:
        return
    res = driver.plan.resources
    try:
        profile = driver.executor.call(_profile, (runs, rounds, max(1, int(res.cpus)), res.memory_gb, res.cpus), res,
                                       driver.renew_lease)
    except ExecutorError as e:
        _say(f"armin: warning: the cost profile failed ({_first_line(e)}); the report has no cost profile")
        return
    save_profile(driver.db, driver.study_id, profile)


def _profile(runs: dict[str, dict], rounds: int, threads: int, memory_gb: float | None, cpus: float) -> Profile:
    """The task: runs arrive as mappings (plain data across the process boundary). It runs under a
    trial's memory bound, as the trials did, so a configuration that cannot fit fails here too instead
    of swapping the node."""
    from armin.orchestration.memory import bounded, trial_bound  # orchestration imports this module

    with bounded(trial_bound(memory_gb, cpus)):
        return profile_arms({arm: from_mapping(RunConfig, m, f"profile {arm}") for arm, m in runs.items()},
                            Settings(rounds=rounds, threads=threads))


def profiled_runs(plan: Any, rows: list[Trial]) -> dict[str, dict]:
    """arm name -> RunConfig mapping to profile: every arm of an ablation (its first seed), or a search's
    SEARCH_PROFILED best configurations ("config N", best first) by mean objective over their seeds."""
    if plan.kind == "ablation":
        from armin.spec.ablation import build_arm_run  # orchestration imports this module

        spec = plan.spec
        trained = {row.arm for row in rows if row.state.counts_as_result()}
        skipped = [a.name for a in spec.arms if a.name not in trained]
        if skipped:  # e.g. every run of an arm failed on its own out-of-memory: profiling it would too
            _say(f"armin: the cost profile leaves out {', '.join(map(repr, skipped))}: no run of "
                 f"{'it' if len(skipped) == 1 else 'them'} has a result")
        return {a.name: to_mapping(build_arm_run(spec, a, spec.seeds[0])) for a in spec.arms if a.name in trained}
    values: dict[int, list[float]] = {}
    config: dict[int, dict] = {}
    for row in rows:
        value = row.objective
        if row.state == TrialState.COMPLETE and value is not None and math.isfinite(value):
            values.setdefault(row.config_id, []).append(value)
            config.setdefault(row.config_id, json.loads(row.config_json))
    sign = 1.0 if plan.objective.direction == "minimize" else -1.0
    best = sorted(values, key=lambda c: (sign * sum(values[c]) / len(values[c]), c))[:SEARCH_PROFILED]
    return {f"config {c}": config[c] for c in best}
