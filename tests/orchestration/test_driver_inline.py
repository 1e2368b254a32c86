"""The driver's rules through the in-process executor: retries, recovery, pruning, Ctrl-C and SIGTERM.

Real driver, real Optuna, real SQLite, real training on tiny budgets; only the trials run on threads
of this process (`InlineExecutor`) instead of Ray workers, so each test takes seconds. Each pins
the invariant its real-Ray twin pins (test_study, test_study_cli, test_lease); those stay, for the
Ray path end to end. A worker process that dies has no in-process equivalent: the inline stand-in
for SIGKILL is `WorkerKilled`, and the executor contract test below checks that both executors
report a killed worker, a raising job and a clean run the same way.
"""

import os
import signal

import optuna
import pytest
from spec_files import write
from test_study import pruned_search, spec_dict, trials

from armin.config import to_mapping
from armin.orchestration.driver import Driver, Interrupted
from armin.orchestration.executors import FailureKind, InlineExecutor, Unfinished
from armin.orchestration.plans import SearchPlan
from armin.orchestration.spec import build_run, load_spec
from armin.orchestration.testing import Fault, FaultyExecutor
from armin.orchestration.worker import Job
from armin.storage import LOST_BY_DRIVER, Database, Study, TrialState
from armin.storage.failures import Failure as FailureClass
from armin.storage.failures import failure_class


def run_inline(tmp_path, data, *, faults=None, **kw):
    path = write(tmp_path, data, "spec.toml")
    db = Database.open(tmp_path / "armin.db")
    executor = InlineExecutor(cpus=2)
    if faults:
        executor = FaultyExecutor(executor, faults)
    progress = Driver(SearchPlan(load_spec(path)), path.read_text(), db, executor=executor, **kw).run()
    return db, progress


def status(db, name="tiny"):
    with db.session() as s:
        return Study.find_or_raise_by_name(s, name).status


def test_a_study_runs_end_to_end_in_process_and_agrees_with_optuna(tmp_path):
    db, progress = run_inline(tmp_path, spec_dict())
    rows = trials(db)
    assert progress.done == progress.total == 6
    assert [t.state for t, _, _ in rows] == [TrialState.COMPLETE] * 6
    assert sorted((t.config_id, t.replicate) for t, _, _ in rows) == [(c, r) for c in range(3) for r in range(2)]
    for t, metrics, cost in rows:
        assert {(10, "eval_loss"), (20, "eval_loss")} <= set(metrics)
        assert cost.n_params > 0 and t.worker_host and t.device == "cpu"
    complete = optuna.load_study(study_name="tiny", storage=db.url).get_trials(
        states=[optuna.trial.TrialState.COMPLETE])
    assert sorted(t.value for t in complete) == sorted(t.value for t, _, _ in rows)
    assert status(db) == "complete"


def test_a_trial_that_raises_fails_once_with_its_traceback(tmp_path):
    db, progress = run_inline(tmp_path, spec_dict(), faults={1: Fault("raise", at_step=10)})
    rows = {t.number: t for t, _, _ in trials(db)}
    assert rows[1].state == TrialState.FAILED and "injected fault" in rows[1].failure_reason
    assert "Traceback" in rows[1].traceback and "RuntimeError" in rows[1].traceback
    assert len(rows) == 6 and [t.state for n, t in rows.items() if n != 1] == [TrialState.COMPLETE] * 5
    assert progress.failed == 1 and progress.done == 5


def test_a_killed_worker_is_lost_unexplained_and_rerun_linked_to_its_attempt(tmp_path):
    db, progress = run_inline(tmp_path, spec_dict(search={"n_trials": 2, "seeds_per_config": 1}),
                              faults={0: Fault("kill", at_step=10)})
    rows = {t.number: t for t, _, _ in trials(db)}
    lost = rows[0]
    assert lost.state == TrialState.LOST and "Worker" in lost.failure_reason
    assert failure_class(lost.state, lost.failure_reason) == FailureClass.UNEXPLAINED
    retry = next(t for t in rows.values() if t.retry_of_id == lost.id)
    assert retry.state == TrialState.COMPLETE and retry.attempt == 2
    assert (retry.config_id, retry.replicate, retry.seed, retry.params_json) == \
           (lost.config_id, lost.replicate, lost.seed, lost.params_json)
    assert progress.done == 2 and progress.lost == 1


def test_retries_are_bounded_by_max_retries_and_the_study_is_failed_not_complete(tmp_path):
    data = spec_dict(search={"n_trials": 1, "seeds_per_config": 1, "max_retries": 1})
    db, progress = run_inline(tmp_path, data, faults={0: Fault("kill", 10), 1: Fault("kill", 10)})
    rows = [t for t, _, _ in trials(db)]
    assert [(t.state, t.attempt) for t in rows] == [(TrialState.LOST, 1), (TrialState.LOST, 2)]
    assert rows[1].retry_of_id == rows[0].id and progress.done == 0 and progress.failed_for_good == 1
    assert status(db) == "failed"


def test_a_dead_drivers_running_rows_are_lost_to_it_and_rerun_once(tmp_path):
    data = spec_dict(search={"n_trials": 2, "seeds_per_config": 1})
    db, _ = run_inline(tmp_path, data)
    with db.session() as s:  # the database as a driver that died mid-trial left it
        study = Study.find_or_raise_by_name(s, "tiny")
        last = study.trials[-1]
        last.state, last.value, last.value_kind = TrialState.RUNNING, None, None
        study.status = "running"
    run_inline(tmp_path, data)
    rows = [t for t, _, _ in trials(db)]
    assert [t.state for t in rows] == [TrialState.COMPLETE, TrialState.LOST, TrialState.COMPLETE]
    assert rows[1].failure_reason == LOST_BY_DRIVER and rows[2].retry_of_id == rows[1].id
    assert sorted((t.config_id, t.replicate) for t in rows if t.state.counts_as_result()) == [(0, 0), (1, 0)]
    assert status(db) == "complete"


def test_the_pruner_stops_bad_trials_early(tmp_path):
    db, progress = run_inline(tmp_path, pruned_search())
    pruned = [(t, m) for t, m, _ in trials(db) if t.state == TrialState.PRUNED]
    assert progress.done == 8 and pruned
    for t, metrics in pruned:
        assert max(step for step, _ in metrics) < 60 and t.value is not None
    ostudy = optuna.load_study(study_name="tiny", storage=db.url)
    assert len(ostudy.get_trials(states=[optuna.trial.TrialState.PRUNED])) == len(pruned)


@pytest.mark.parametrize("signum,reason", [(signal.SIGINT, "interrupted by the user (Ctrl-C)"),
                                           (signal.SIGTERM, "interrupted by SIGTERM")])
def test_a_signal_cancels_the_running_trials_records_them_and_resume_finishes(tmp_path, signum, reason):
    sent = []

    def signal_once_running(p):
        if p.running and not sent:
            sent.append(signum)
            os.kill(os.getpid(), signum)  # to this process: the driver's handler sets its flag

    data = spec_dict(search={"n_trials": 2, "seeds_per_config": 1})
    with pytest.raises(Interrupted) as stopped:
        run_inline(tmp_path, data, on_progress=signal_once_running)
    assert stopped.value.signum == signum and signal.getsignal(signum) is not None
    db = Database.open(tmp_path / "armin.db")
    rows = [t for t, _, _ in trials(db)]
    cancelled = [t for t in rows if t.state == TrialState.CANCELLED]
    assert cancelled and all(t.failure_reason == reason for t in cancelled)
    assert TrialState.RUNNING not in {t.state for t in rows} and status(db) == "interrupted"

    _, progress = run_inline(tmp_path, data)  # resume: every cancelled attempt runs again, linked to it
    rows = [t for t, _, _ in trials(db)]
    assert all(any(r.retry_of_id == t.id for r in rows) for t in cancelled)
    assert progress.done == 2 and status(db) == "complete"


# ---------------------------------------------------------------- the executor contract, both executors


@pytest.fixture(params=["inline", "ray"])
def executor(request):
    if request.param == "ray":  # the real executor must report what the inline tests above rely on
        request.getfixturevalue("ray_cluster")
        from armin.orchestration.executors import RayExecutor

        return RayExecutor()
    return InlineExecutor(cpus=2)


def test_both_executors_report_a_run_a_raising_job_and_a_killed_worker_alike(executor, tmp_path):
    spec = load_spec(write(tmp_path, spec_dict(), "spec.toml"))
    run = to_mapping(build_run(spec, {"model.addressing": "hidden", "model.cell": "armin"}, 7))
    faulty = FaultyExecutor(executor, {1: Fault("raise", at_step=10), 2: Fault("kill", at_step=10)})
    with faulty.connected(spec.resources, Interrupted):
        assert faulty.capacity().cpus >= spec.resources.cpus
        handles = {faulty.submit(Job(run=run, number=n), spec.resources): n for n in range(3)}
        seen: dict[int, list] = {n: [] for n in range(3)}
        live = list(handles)
        while live:
            got = faulty.next_event(live, 300.0)  # the first trial in a fresh process may build the C++ loop
            assert got is not None, f"no event within 300 s; so far {seen}"
            handle, event = got
            seen[handles[handle]].append(event)
            if isinstance(event, Unfinished) or event["kind"] in ("result", "failed"):
                live.remove(handle)
                faulty.done(handle)
    kinds = {n: [e.kind if isinstance(e, Unfinished) else e["kind"] for e in events] for n, events in seen.items()}
    assert kinds[0] == ["started", "eval", "eval", "result"]
    assert kinds[1] == ["started", "failed"] and "injected fault at step 10" in seen[1][-1]["reason"]
    assert kinds[2] == ["started", FailureKind.WORKER_DIED]
