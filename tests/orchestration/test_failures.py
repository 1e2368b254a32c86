"""Failure classes, the per-trial memory bound, and studies with unfinished slots (issue 13 item 6).

Real parts: the out-of-memory is a real allocation refused under a real RLIMIT_DATA bound in a Ray
worker; the memory-pressure kills are Ray's own memory monitor, in a second Ray cluster (its own
process: one process holds one cluster) whose threshold is set below the node's usage, so it kills
every trial it sees; Ray's errors are real ones raised by real tasks.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import ray
from spec_files import write
from test_ablation import TINY as ABLATION

from armin.errors import ConfigError
from armin.orchestration.ablation_spec import load_ablation
from armin.orchestration.executors.ray_executor import failure_of
from armin.orchestration.failures import trial_error, unfinished
from armin.orchestration.memory import GIB, bounded, data_size
from armin.config import to_mapping
from armin.orchestration.spec import load_spec, spec_hash
from armin.reporting.render import build_report
from armin.reporting.status import study_summary
from armin.storage import LOST_BY_DRIVER, Database, Study, TrialState
from armin.storage.failures import (MAX_ENVIRONMENTAL_LOSSES, MEMORY_PRESSURE, NODE_LOST, Failure, failure_class,
                                    retry_due)

ARMIN = [sys.executable, "-m", "armin.cli.main"]
CRASH = (TrialState.LOST, "WorkerCrashedError: The worker died unexpectedly")  # unexplained
NODE = (TrialState.LOST, f"{NODE_LOST}; NodeDiedError: gone")  # environmental
#: An ablation whose "huge" arm needs ~4 GiB of weights (an LSTM-sized cell at hidden 16000) under a 1 GiB bound.
HUGE = {**ABLATION, "name": "oom", "factors": {"model.cell": ["armin", "lstm"]},
        "design": {"baseline": {"model.cell": "armin"}, "seeds": [11, 12], "max_retries": 2},
        "extra_arms": {"huge": {"model.hidden_size": 16000}}, "resources": {"cpus": 1, "memory_gb": 1}}


# ---------------------------------------------------------------- the rule, from rows alone


def test_deterministic_failures_are_final_at_once_and_cancels_always_run_again():
    assert not retry_due([(TrialState.FAILED, "RuntimeError: boom")], max_retries=5)
    assert not retry_due([(TrialState.COMPLETE, None)], max_retries=5)
    assert retry_due([(TrialState.CANCELLED, "interrupted by the user (Ctrl-C)")] * 50, max_retries=0)
    assert failure_class(TrialState.LOST, LOST_BY_DRIVER) == Failure.ENVIRONMENTAL


def test_environmental_losses_do_not_spend_the_retry_budget_but_are_bounded():
    assert retry_due([CRASH], max_retries=1) and not retry_due([CRASH, CRASH], max_retries=1)
    # an unexplained loss, then environmental ones: the budget (1) still has its one retry left
    assert retry_due([CRASH, NODE, (TrialState.LOST, LOST_BY_DRIVER), NODE], max_retries=1)
    assert not retry_due([NODE, NODE, CRASH, CRASH], max_retries=1)  # two unexplained: spent
    assert retry_due([NODE] * MAX_ENVIRONMENTAL_LOSSES, max_retries=0)
    assert not retry_due([NODE] * (MAX_ENVIRONMENTAL_LOSSES + 1), max_retries=0)


# ---------------------------------------------------------------- Ray's errors, as Ray raises them


def test_ray_errors_are_classified_by_their_cause(ray_cluster):
    @ray.remote(max_retries=0)
    def bad_config():
        raise ValueError("model.hidden_size: must be >= 1")

    with pytest.raises(ray.exceptions.RayTaskError) as raised:
        ray.get(bad_config.remote())
    assert unfinished(failure_of(raised.value)) == (TrialState.FAILED, "ValueError: model.hidden_size: must be >= 1")

    @ray.remote(max_retries=0)
    def killed():
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(ray.exceptions.WorkerCrashedError) as raised:
        ray.get(killed.remote())
    state, reason = unfinished(failure_of(raised.value))
    assert state == TrialState.LOST and failure_class(state, reason) == Failure.UNEXPLAINED
    for error in (ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory."),
                  ray.exceptions.NodeDiedError("node died")):
        state, reason = unfinished(failure_of(error))
        assert state == TrialState.LOST and failure_class(state, reason) == Failure.ENVIRONMENTAL
        assert type(error).__name__ in reason and "\n" not in reason


def monitor_message(used_gb: float) -> str:
    """The lines of Ray 2.60's memory-monitor message that say who used what (captured from a real kill)."""
    return ("1 worker(s) were killed due to the node running low on memory. Memory on the node (IP: 192.0.2.2, ID: "
            "e836) was 22.03GB used / 23.54GB limit (0.935)\nOOM kill reason: Memory usage exceeded threshold\n"
            "Selected to kill: (Task: job ID=01000000, task name=trial_stream, required resources={CPU: 1}, pid=20474, "
            f"actual memory used={used_gb:.2f}GB, worker ID=0d59)")


def test_a_trial_the_memory_monitor_kills_while_it_fills_the_node_fails_as_its_own_out_of_memory():
    state, reason = unfinished(failure_of(ray.exceptions.OutOfMemoryError(monitor_message(0.12))))
    assert state == TrialState.LOST and reason.startswith(MEMORY_PRESSURE + " (this trial used 0.12 GB)")
    state, reason = unfinished(failure_of(ray.exceptions.OutOfMemoryError(monitor_message(15.5))))
    assert state == TrialState.FAILED and "used 15.5 of its node's 23.5 GB" in reason and "memory_gb" in reason


NODE_DEATH = textwrap.dedent("""
    import json, time
    import ray
    from ray.cluster_utils import Cluster
    from armin.orchestration.executors.ray_executor import failure_of
    from armin.orchestration.failures import unfinished

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    far = cluster.add_node(num_cpus=1, resources={"far": 1})
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)

    @ray.remote(num_cpus=1, resources={"far": 1}, max_retries=0)
    def trial():  # a streaming task, as trials are
        yield "started"
        time.sleep(120)
        yield "never"

    stream = trial.remote()
    assert ray.get(next(stream)) == "started"
    cluster.remove_node(far, allow_graceful=False)  # the node dies mid-trial
    try:
        ray.get(next(stream))
    except ray.exceptions.RayError as e:
        state, reason = unfinished(failure_of(e))
        print(json.dumps([type(e).__name__, state.name, reason]))
    ray.shutdown()
    cluster.shutdown()
""")


def test_a_node_that_dies_mid_trial_is_an_environmental_loss(tmp_path):
    script = tmp_path / "node.py"
    script.write_text(NODE_DEATH)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # a test cluster: no token to hand round
    assert done.returncode == 0, done.stderr[-3000:]
    error, state, reason = json.loads(done.stdout.strip().splitlines()[-1])
    assert error == "NodeDiedError" and state == "LOST" and reason.startswith(NODE_LOST)
    assert failure_class(TrialState.LOST, reason) == Failure.ENVIRONMENTAL


# ---------------------------------------------------------------- the memory bound


def test_bound_refuses_an_allocation_beyond_it_names_it_and_is_lifted_after():
    import torch

    with bounded(GIB // 4):
        with pytest.raises(RuntimeError) as raised:
            torch.empty(GIB // 2, dtype=torch.uint8)
        kept = torch.empty(GIB // 16, dtype=torch.uint8)  # within the bound
    reason = trial_error(raised.value, GIB // 4)
    assert reason.startswith("out of memory: RuntimeError:") and "bound 0.25 GiB (resources.memory_gb)" in reason
    assert torch.empty(GIB // 2, dtype=torch.uint8).numel() == GIB // 2 and kept.numel() == GIB // 16
    assert trial_error(ValueError("bad"), GIB) == "ValueError: bad" and data_size() > 0


@pytest.mark.parametrize("value,expected", [(0, "must be >= 0.0625"), (-1, "must be >= 0.0625"),
                                            (float("inf"), "must be a finite number"), ("4", "expected a number")])
def test_bad_memory_bounds_are_one_line_naming_the_key(tmp_path, value, expected):
    path = write(tmp_path, {**HUGE, "resources": {"memory_gb": value}}, "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_ablation(path)
    message = str(info.value)
    assert message.startswith(f"{path}: resources.memory_gb") and expected in message and "\n" not in message


def test_an_unset_bound_leaves_the_spec_hash_of_existing_studies_unchanged(tmp_path):
    """Their stored hash is of the resolved spec with resources {cpus, gpus}: a resume must still match it."""
    from test_study import TINY

    spec = load_spec(write(tmp_path, TINY))
    before = to_mapping(spec) | {"resources": {"cpus": spec.resources.cpus, "gpus": spec.resources.gpus}}
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert spec_hash(spec) == hashlib.sha256(canonical.encode()).hexdigest()
    assert spec_hash(load_spec(write(tmp_path, {**TINY, "resources": {"memory_gb": 2}}))) != spec_hash(spec)


def test_own_out_of_memory_fails_that_trial_once_and_the_study_ends_incomplete(ray_cluster, tmp_path):
    """A real OOM under a 1 GiB bound: the huge arm's trials FAIL once with the reason, the others complete."""
    spec, db_path = write(tmp_path, HUGE, "oom.toml"), tmp_path / "armin.db"
    done = subprocess.run([*ARMIN, "ablation", "run", str(spec), "--db", str(db_path), "--address", ray_cluster,
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ablation oom ended incomplete: 2 of 6 slots failed for good" in done.stdout
    assert "complete: all" not in done.stdout
    db = Database.open(db_path, readonly=True)
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "oom")
        rows = study.trials
        assert study.status == "failed" and len(rows) == 6  # no retries at all
        huge = [t for t in rows if t.arm == "huge"]
        assert [t.state for t in huge] == [TrialState.FAILED] * 2
        for t in huge:
            assert t.failure_reason.startswith("out of memory: OutOfMemory: model:") and "does not fit in memory" in \
                t.failure_reason and "bound 1 GiB (resources.memory_gb)" in t.failure_reason, t.failure_reason
        assert all(t.state == TrialState.COMPLETE for t in rows if t.arm != "huge")
    summary = study_summary(db, "oom")
    assert summary.startswith("ablation oom (ended incomplete: 2 of 6 slots failed for good)")
    out = build_report(db_path, "oom", tmp_path / "report").parent
    facts = pd.read_csv(out / "provenance.csv").set_index("item")["value"]
    assert facts["status"] == "ended incomplete: 2 of 6 slots failed for good"


# ---------------------------------------------------------------- Ray's memory monitor


MONITOR = textwrap.dedent("""
    import json, sys
    import ray
    import armin.storage.failures as failures
    from armin.orchestration.driver import Driver
    from armin.orchestration.plans import SearchPlan
    from armin.orchestration.spec import load_spec
    from armin.storage import Database, Study

    failures.MAX_ENVIRONMENTAL_LOSSES = 2  # the bound, made small so the test is short (the rule reads it per call)
    # the node's usage is always above 1%: the monitor kills every trial, as a neighbour's blow-up would
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _system_config={"memory_usage_threshold": 0.01, "memory_monitor_refresh_ms": 100})
    path, db_path = sys.argv[1], sys.argv[2]
    db = Database.open(db_path)
    progress = Driver(SearchPlan(load_spec(path)), open(path).read(), db).run()
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "tiny")
        print(json.dumps({"status": study.status, "failed_for_good": progress.failed_for_good,
                          "rows": [[t.state.name, t.attempt, t.failure_reason] for t in study.trials]}))
""")


def test_trials_killed_by_rays_memory_monitor_are_retried_without_their_budget_and_bounded(tmp_path):
    from test_study import spec_dict

    data = spec_dict(search={"n_trials": 1, "seeds_per_config": 1, "max_retries": 0},
                     train={"steps": 100000, "eval_every": 50000})  # long: the monitor always gets there first
    path, script = write(tmp_path, data, "spec.toml"), tmp_path / "monitor.py"
    script.write_text(MONITOR)
    done = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "armin.db")], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # max_retries = 0, yet re-run: environmental losses spend the bound (2 re-runs here), not the budget
    assert [(state, attempt) for state, attempt, _ in result["rows"]] == [("LOST", 1), ("LOST", 2), ("LOST", 3)]
    assert all(reason.startswith(MEMORY_PRESSURE) and "OutOfMemoryError" in reason
               for *_, reason in result["rows"])
    assert result["status"] == "failed" and result["failed_for_good"] == 1


def test_a_bound_no_node_can_reserve_is_refused_in_one_line_not_left_waiting(ray_cluster, tmp_path):
    from armin.orchestration.driver import Driver, MemoryBoundTooLarge
    from armin.orchestration.plans import AblationPlan

    path = write(tmp_path, {**HUGE, "resources": {"memory_gb": 100_000}}, "big.toml")
    db = Database.open(tmp_path / "armin.db")
    with pytest.raises(MemoryBoundTooLarge) as info:
        Driver(AblationPlan(load_ablation(path)), path.read_text(), db).run()
    message = str(info.value)
    assert message.startswith("resources.memory_gb = 100000, but the largest node") and "\n" not in message
    with db.session() as s:
        assert Study.find_or_raise_by_name(s, "oom").trials == []  # nothing launched
