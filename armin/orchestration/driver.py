"""The driver: the one process that owns the sampler (Optuna, for searches) and writes the database.

Workers run trials as Ray streaming tasks and only ever talk back to this process, which is what
makes one SQLite file safe (one writer) and lets workers live on other machines with no shared disk.

Units of work. A `Plan` (armin.orchestration.plans) says which (configuration, seed) *slots* a
study has: configurations asked from Optuna x seeds for a search, arms x seeds for an ablation.
Every attempt at a slot is one row in `armin_trials`. A slot is finished when an attempt gives a
result (complete, pruned, diverged) or fails for good; which failed attempts are re-run (linked
to the attempt they replace) is `armin.storage.failures`'s rule, read from the slot's rows: a trial
that raised (its own out-of-memory included) fails once; one lost to its environment (node, Ray's
memory monitor, driver death) is re-run without using its `max_retries`; an unexplained loss uses
them. Everything needed to resume is in the database, so a killed driver picks up where it stopped.
A study whose slots did not all get a result ends "failed", never "complete".

A plan that grows (an ablation with seeds on demand) is asked again for its slots whenever an
attempt finishes and a worker is free (`refresh`), from the database's rows alone: a comparison
whose round is complete gets its next seeds while other trials still run, and the study is
complete only when the plan asks for nothing more and nothing runs.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from armin.config import changed_paths, summarize_changes, to_mapping
from armin.costs import hook as cost_hook
from armin.costs.settings import driver_rounds
from armin.errors import ArminError
from armin.orchestration import cluster
from armin.orchestration.failures import unfinished
from armin.orchestration.plans import Plan, Slot
from armin.orchestration.provenance import git_commit, versions
from armin.orchestration.worker import Fault, trial_stream
from armin.storage import (
    LOST_BY_DRIVER,
    Cost,
    Database,
    Metric,
    SpecVersion,
    Study,
    Trial,
    TrialState,
    encode_value,
    utcnow,
)
from armin.storage.failures import History, count_failed_for_good, histories
from armin.storage.lease import DriverLease, LeaseLost

POLL_S = 0.5  # how long the driver waits for any worker event before refreshing progress
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both cancel the running trials and exit 128 + signum
INTERRUPT_NAMES = {signal.SIGINT: "the user (Ctrl-C)", signal.SIGTERM: "SIGTERM"}  # in cancelled rows' reason


@dataclass
class Running:
    row_id: int
    slot: Slot
    handle: object  # the plan's handle (an Optuna trial in a search)
    stream: object  # ray.ObjectRefGenerator
    last_value: float | None = None


@dataclass
class Progress:
    """What the live progress line shows; also the driver's return value."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    pruned: int = 0
    diverged: int = 0
    lost: int = 0
    failed_for_good: int = 0  # slots that ended without a result (set when the study ends)
    best: float | None = None
    design: str | None = None  # a growing plan's state, e.g. "round 2/5 | seeds per arm: ..."
    done_at_start: int = 0  # results already in the database when this driver started
    started: float = field(default_factory=time.monotonic)

    def eta_s(self) -> float | None:
        """From this session's pace: results still owed x seconds per result so far."""
        done_now = self.done - self.done_at_start
        if done_now <= 0:
            return None
        return (time.monotonic() - self.started) / done_now * max(self.total - self.done, 0)


class StudyChanged(ArminError):
    pass


class MemoryBoundTooLarge(ArminError):
    pass


class Interrupted(KeyboardInterrupt):
    """The driver stopped on Ctrl-C (SIGINT) or SIGTERM after cancelling and recording its running trials.

    `signum` says which; the CLI exits with 128 + signum (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)


class Driver:
    def __init__(self, plan: Plan, spec_text: str, db: Database, *, address: str | None = None,
                 max_parallel: int | None = None, force: bool = False, command: str | None = None,
                 faults: dict[int, Fault] | None = None, on_progress: Callable[[Progress], None] | None = None):
        self.plan, self.spec_text, self.db = plan, spec_text, db
        self.address, self.max_parallel, self.force = address, max_parallel, force
        self.command = command or " ".join(sys.argv)
        self.faults = faults or {}  # trial number -> Fault (tests only)
        self.on_progress = on_progress or (lambda p: None)
        self.running: dict[object, Running] = {}
        self.pending: list[Slot] = []
        self.expected: set[tuple[int, int]] = set()  # slot keys the plan asks for
        self.stale = False  # an attempt finished since a growing plan was last asked for its slots
        self.direction = plan.objective.direction
        # row id -> wall-clock marks (begun, launched, started, result_sent, received, written): `armin bench study`
        self.timings: dict[int, dict[str, float]] = {}
        self.lease_lost = False  # another driver took the study over (our heartbeat stopped too long)

    # ---- the study row --------------------------------------------------------------------------
    def open_study(self) -> int:
        """Create the study row, or reopen it; append a spec version when the resolved spec changed.

        A changed contract (the plan's digest) is refused, naming the keys that changed, unless `--force`;
        then it is recorded as a forced version, so the spec every earlier trial ran under is kept.
        """
        plan, digest, spec_json = self.plan, self.plan.digest(), self.plan.spec_json()
        with self.db.session() as s:
            row = s.query(Study).filter_by(name=plan.name).one_or_none()
            if row is None:
                sha, dirty = git_commit()
                row = Study(name=plan.name, kind=plan.kind, goal=plan.goal, spec_text=self.spec_text,
                            spec_json=spec_json, spec_hash=digest, optuna_study_name=plan.name,
                            status="running", created_at=utcnow(), updated_at=utcnow(), git_commit=sha,
                            git_dirty=dirty, command=self.command, versions_json=json.dumps(versions()))
                s.add(row)
                s.flush()
                self.spec_version = self.add_spec_version(row, forced=False, changes=None)
                return row.id
            self.check_study(row)
            if not row.spec_versions:  # a study from before the spec history (an upgraded file): its spec is version 1
                self.add_spec_version(row, forced=False, changes=None)
            if json.loads(row.spec_json) != json.loads(spec_json):
                changes = summarize_changes(changed_paths(json.loads(row.spec_json), json.loads(spec_json)), limit=12)
                forced = plan.stored_digest(row.spec_json) != digest
                row.spec_text, row.spec_json, row.spec_hash = self.spec_text, spec_json, digest
                self.spec_version = self.add_spec_version(row, forced=forced, changes=changes)
            else:
                self.spec_version = row.spec_versions[-1].version  # ordered by version; never empty here
            row.status, row.updated_at = "running", utcnow()
            s.flush()
            return row.id

    def check_study(self, row: Study | None) -> None:
        """Refuse a same-named study of the other kind, or a changed contract without --force: one line
        naming the keys that changed. Run read-only before the lease is taken, and again under it."""
        plan = self.plan
        if row is None:
            return
        if row.kind != plan.kind:
            raise StudyChanged(f"'{plan.name}' is already a {row.kind} in {self.db.path}; give the {plan.kind} "
                               f"another name")
        digest, stored = plan.digest(), plan.stored_digest(row.spec_json)
        if stored != digest and not self.force:
            changed = changed_paths(plan.contract(json.loads(row.spec_json)), plan.contract(json.loads(plan.spec_json())))
            raise StudyChanged(
                f"{plan.kind} '{plan.name}' was started from a different {plan.contract_name}: "
                f"{summarize_changes(changed)} (stored {stored[:12]}, now {digest[:12]}); rerun with "
                f"--force to continue anyway (recorded as a new spec version), or rename it")

    def add_spec_version(self, study: Study, *, forced: bool, changes: str | None) -> int:
        """Append the study row's current spec as its next version; returns the version number."""
        number = max((v.version for v in study.spec_versions), default=0) + 1
        study.spec_versions.append(SpecVersion(version=number, spec_text=study.spec_text, spec_json=study.spec_json,
                                               spec_hash=study.spec_hash, forced=forced, changes=changes,
                                               command=self.command, created_at=utcnow()))
        return number

    # ---- recovery: everything from the database -------------------------------------------------
    def recover(self) -> None:
        """Mark attempts left running by a dead driver as lost and queue every unfinished slot."""
        with self.db.session() as s:
            rows = s.query(Trial).filter_by(study_id=self.study_id).order_by(Trial.number).all()
            for old, new in self.plan.reconcile(rows).items():
                print(f"armin: arm {old!r} is now named {new!r} (the same model); its runs count", file=sys.stderr)
            for row in rows:
                if row.state == TrialState.RUNNING:
                    row.state, row.failure_reason, row.finished_at = TrialState.LOST, LOST_BY_DRIVER, utcnow()
            latest = {(row.config_id, row.seed): row for row in rows}
            slots = slot_histories(rows)
            for slot in self.plan.expected_slots(rows):
                self.expected.add(slot.key)
                row = latest.get(slot.key)
                if row is None:
                    self.pending.append(slot)
                elif self.plan.retryable(slots[slot.key]):
                    self.pending.append(Slot(slot.config_id, slot.replicate, slot.params, slot.seed, slot.arm,
                                             row.attempt + 1, row.id))
        self.plan.cleanup_stale()  # after our session: Optuna writes the same file

    def refresh(self) -> None:
        """Ask a growing plan again, from the database, and queue the slots it adds."""
        self.stale = False
        with self.db.session() as s:
            rows = s.query(Trial).filter_by(study_id=self.study_id).order_by(Trial.number).all()
            slots = self.plan.expected_slots(rows)
        for slot in slots:
            if slot.key not in self.expected:  # queued, running and finished slots are all in `expected`
                self.expected.add(slot.key)
                self.pending.append(slot)
        self.progress.total = len(self.expected)
        self.progress.design = self.plan.describe_slots(self.expected)

    # ---- launching ------------------------------------------------------------------------------
    def next_slot(self) -> tuple[Slot, object] | None:
        if not self.pending and self.stale and self.plan.grows:
            self.refresh()
        if self.pending:
            slot = self.pending.pop(0)
            return slot, self.plan.handle_for(slot)
        fresh = self.plan.new_slot()
        if fresh is None:
            return None
        slot, handle, others = fresh
        self.pending.extend(others)
        self.expected.update(x.key for x in (slot, *others))
        return slot, handle

    def launch(self, slot: Slot, handle: object) -> None:
        begun = time.time()
        run = self.plan.build_run(slot)
        m = run.model
        with self.db.session() as s:
            number = (s.query(Trial.number).filter_by(study_id=self.study_id)
                      .order_by(Trial.number.desc()).limit(1).scalar())
            number = 0 if number is None else number + 1
            row = Trial(study_id=self.study_id, number=number, optuna_trial_id=self.plan.trial_id(handle),
                        config_id=slot.config_id, replicate=slot.replicate, seed=slot.seed, attempt=slot.attempt,
                        retry_of_id=slot.retry_of_id, state=TrialState.RUNNING, arm=slot.arm,
                        spec_version=self.spec_version,
                        params_json=json.dumps(slot.params, sort_keys=True),
                        config_json=json.dumps(to_mapping(run), sort_keys=True), arch=m.arch,
                        formulation=m.formulation, addressing=m.addressing, cell=m.cell, read=m.read,
                        temperature_kind=m.temperature.kind, hidden_size=m.hidden_size, n_slots=m.n_slots,
                        started_at=utcnow())
            s.add(row)
            s.flush()
            row_id = row.id
        res = self.plan.resources
        launched = time.time()
        memory = {} if res.memory_bytes is None else {"memory": res.memory_bytes}
        remote = ray.remote(trial_stream).options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=0, **memory)
        stream = remote.remote(to_mapping(run), max(1, int(res.cpus)), self.faults.get(number),
                               memory_gb=res.memory_gb, cpus=res.cpus)
        self.running[stream] = Running(row_id, slot, handle, stream)
        self.timings[row_id] = {"begun": begun, "launched": launched}

    # ---- events from workers --------------------------------------------------------------------
    def handle(self, stream) -> None:
        run = self.running[stream]
        try:
            event = ray.get(next(stream))
        except StopIteration:
            self.finish(run, TrialState.LOST, reason="the worker stopped without a result")
            return
        except (ray.exceptions.RayError, ConnectionError) as e:
            state, reason = unfinished(e)
            self.finish(run, state, reason=reason)
            return
        kind = event["kind"]
        marks = self.timings[run.row_id]
        if kind == "started":
            marks["started"] = event["t"]
            with self.db.session() as s:
                row = s.get(Trial, run.row_id)
                row.worker_host, row.device = event["host"], event["device"]
        elif kind == "eval":
            self.record_eval(run, event["step"], event["metrics"])
        elif kind == "result":
            marks["result_sent"], marks["received"] = event["t"], time.time()
            self.finish_result(run, event["result"])
            marks["written"] = time.time()
        elif kind == "failed":
            self.finish(run, TrialState.FAILED, reason=event["reason"], tb=event["traceback"])

    def record_eval(self, run: Running, step: int, metrics: dict) -> None:
        with self.db.session() as s:
            for name, value in metrics.items():
                if name != "step":
                    v, kind = encode_value(value)
                    s.add(Metric(trial_id=run.row_id, step=step, name=name, value=v, value_kind=kind))
        value = metrics.get(self.plan.objective.metric)
        if value is None or not math.isfinite(value):
            return
        if self.plan.report(run.handle, value, step):
            ray.cancel(run.stream, force=True)
            self.finish(run, TrialState.PRUNED, value=value)

    def finish_result(self, run: Running, result: dict) -> None:
        with self.db.session() as s:
            s.get(Trial, run.row_id).data_source = result.get("data_source")
            s.add(Cost.from_run_result(result, trial_id=run.row_id))
        if result["status"] == "diverged":  # a result, not a crash: never retried
            self.finish(run, TrialState.DIVERGED, diverged_step=result["diverged_step"])
        else:
            self.finish(run, TrialState.COMPLETE, value=result["final"].get(self.plan.objective.metric))

    def finish(self, run: Running, state: TrialState, *, value: float | None = None, reason: str | None = None,
               tb: str | None = None, diverged_step: int | None = None) -> None:
        """Record an attempt's outcome, tell the plan, and queue a retry if the outcome allows one."""
        del self.running[run.stream]
        with self.db.session() as s:
            row = s.get(Trial, run.row_id)
            row.state, row.finished_at = state, utcnow()
            row.value, row.value_kind = encode_value(value)
            row.failure_reason, row.traceback, row.diverged_step = reason, tb, diverged_step
            s.flush()
            slot = run.slot
            mine = s.query(Trial).filter_by(study_id=self.study_id, config_id=slot.config_id, seed=slot.seed)
            history = slot_histories(mine.order_by(Trial.number).all())[slot.key]
        self.plan.tell(run.handle, state, value)  # after our session commits: Optuna writes the same file
        self.count(state, value)
        self.stale = True
        if self.plan.retryable(history):
            self.pending.insert(0, Slot(slot.config_id, slot.replicate, slot.params, slot.seed, slot.arm,
                                        slot.attempt + 1, run.row_id))

    # ---- progress -------------------------------------------------------------------------------
    def count(self, state: TrialState, value: float | None) -> None:
        p = self.progress
        p.done += state.counts_as_result()
        p.failed += state == TrialState.FAILED
        p.pruned += state == TrialState.PRUNED
        p.diverged += state == TrialState.DIVERGED
        p.lost += state == TrialState.LOST
        if state == TrialState.COMPLETE and value is not None and math.isfinite(value):
            better = (lambda a, b: a < b) if self.direction == "minimize" else (lambda a, b: a > b)
            if p.best is None or better(value, p.best):
                p.best = value

    def initial_progress(self) -> None:
        self.progress = Progress(total=len(self.expected) if self.plan.grows else self.plan.total,
                                 design=self.plan.describe_slots(self.expected))
        with self.db.session() as s:
            for row in s.query(Trial).filter_by(study_id=self.study_id):
                if (row.config_id, row.seed) in self.expected:
                    self.count(row.state, row.value)
        self.progress.done_at_start = self.progress.done

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> Progress:
        """Run the study to completion; raise `Interrupted` (a KeyboardInterrupt) on Ctrl-C or SIGTERM.

        The study's lease is taken before anything is written (a second live driver is refused with
        `StudyBusy`, touching nothing) and released however the run ends.
        """
        driver_rounds()  # a malformed $ARMIN_PROFILE_ROUNDS is one line now, not after every trial ran
        with self.db.session() as s:  # a refusal writes nothing, not even the lease
            self.check_study(s.query(Study).filter_by(name=self.plan.name).one_or_none())
        self.db.check_new_study_name(self.plan.name)  # Optuna's load_if_exists would join a foreign study
        self.lease = DriverLease.take(self.db, self.plan.name, kind=self.plan.kind)
        try:  # Ray is joined and the resources checked before the study row or any trial is touched
            with cluster.connected(self.address, self.plan.resources.cpus, self.plan.resources.gpus, Interrupted):
                return self._run()
        finally:
            if not self.lease_lost:
                self.lease.release()

    def _run(self) -> Progress:
        self.study_id = self.open_study()
        self.plan.open(self.db.url)
        self.recover()  # with the lease held, every RUNNING row is a dead driver's
        self.initial_progress()
        limit = self.max_parallel or self.parallel_capacity()
        cost_hook.before_trials(self)  # the C++ loop built once per node, outside every trial's clock
        status = "interrupted"
        # Ctrl-C and SIGTERM (what Slurm, systemd and Kubernetes send) set a flag that the loop checks,
        # instead of raising wherever the signal lands (in a database write, or inside Ray, which may
        # swallow it); a second signal raises at once. Installed after ray.init, which sets its own
        # SIGTERM handler (sys.exit, which crashes Ray's threads); the previous handlers come back after.
        interrupted: list[int] = []

        def on_signal(signum, frame):
            if interrupted:
                raise Interrupted(signum)
            interrupted.append(signum)

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS} if main_thread else {}
        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            self.check_memory_fits()
            while not interrupted:
                while len(self.running) < limit and not interrupted and (nxt := self.next_slot()) is not None:
                    self.launch(*nxt)
                self.progress.running = len(self.running)
                self.on_progress(self.progress)
                if not self.running or interrupted:
                    break
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
                for stream in ready:
                    self.handle(stream)
                self.renew_lease()
            if interrupted:
                raise Interrupted(interrupted[0])
            cost_hook.after_trials(self)  # the arms' cost profile, in one Ray task with a trial's resources
            self.progress.failed_for_good = self.count_failed_for_good()
            status = "failed" if self.progress.failed_for_good else "complete"
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            self.cancel_all(f"interrupted by {INTERRUPT_NAMES.get(signum, signal.Signals(signum).name)}")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not self.lease_lost:  # else another driver owns the study row now
                with self.db.session() as s:
                    row = s.get(Study, self.study_id)
                    row.status, row.updated_at = status, utcnow()
        return self.progress

    def renew_lease(self) -> None:
        """The heartbeat. If another driver took the study over, stop its trials' twins and write nothing more."""
        try:
            self.lease.renew()
        except LeaseLost:
            self.lease_lost = True
            for run in self.running.values():
                ray.cancel(run.stream, force=True)
            self.running.clear()
            raise

    def cancel_all(self, reason: str) -> None:
        for run in list(self.running.values()):
            ray.cancel(run.stream, force=True)
            self.finish(run, TrialState.CANCELLED, reason=reason)
        self.pending.clear()  # cancelled attempts are re-run by the next `run`/`resume`

    def check_memory_fits(self) -> None:
        """A memory bound no node can reserve would leave every trial waiting for ever: say so instead."""
        need = self.plan.resources.memory_bytes
        if need is None:
            return
        largest = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if largest < need:
            raise MemoryBoundTooLarge(
                f"resources.memory_gb = {self.plan.resources.memory_gb:g}, but the largest node of the cluster offers "
                f"{largest / 2**30:.3g} GiB of Ray's memory resource; lower memory_gb or add a larger node")

    def count_failed_for_good(self) -> int:
        """Slots the plan asks for that ended without a result (read from the database, as `study status` does)."""
        with self.db.session() as s:
            rows = s.query(Trial).filter_by(study_id=self.study_id).order_by(Trial.number).all()
            slots = {key: h for key, h in slot_histories(rows).items() if key in self.expected}
        return count_failed_for_good(slots, max_retries=self.plan.max_retries)

    def parallel_capacity(self) -> int:
        """How many trials fit at once in the cluster's resources."""
        total, res = ray.cluster_resources(), self.plan.resources
        fits = [math.floor(total.get("CPU", 0) / res.cpus + 1e-9)]
        if res.gpus > 0:
            fits.append(math.floor(total.get("GPU", 0) / res.gpus + 1e-9))
        if res.memory_bytes is not None:
            fits.append(math.floor(total.get("memory", 0) / res.memory_bytes + 1e-9))
        return max(1, min(fits))


def slot_histories(rows: list[Trial]) -> dict[tuple[int, int], History]:
    """Each (config_id, seed) slot's attempts, oldest first (`rows` in run order)."""
    return histories(((row.config_id, row.seed), row.state, row.failure_reason) for row in rows)
