"""The driver: the one process that owns the sampler (Optuna, for searches) and writes the database.

An executor (`armin.orchestration.executors`: Ray by default, or in-process threads) runs the
trials; they only ever talk back to this process, which is what makes one SQLite file safe (one
writer, `armin.storage.writer`) and lets workers live on other machines with no shared disk.

Units of work. A `Design` (armin.orchestration.plans) says which (configuration, seed) *slots* a
study has: configurations asked from its sampler (Optuna) x seeds for a search, arms x seeds for an
ablation (no sampler).
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

from armin.config import changed_paths, summarize_changes, to_mapping
from armin.costs import hook as cost_hook
from armin.costs.settings import driver_rounds
from armin.errors import MemoryBoundTooLarge, StudyChanged
from armin.orchestration.executors.base import Executor, Unfinished
from armin.orchestration.failures import unfinished
from armin.orchestration.plans import Design, Slot
from armin.orchestration.worker import Job
from armin.provenance import git_commit, versions
from armin.storage import Database, Study, Trial, TrialState, writer
from armin.storage.failures import History, count_failed_for_good, histories
from armin.storage.lease import DriverLease, LeaseLost

POLL_S = 0.5  # how long the driver waits for any worker event before refreshing progress
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both cancel the running trials and exit 128 + signum
INTERRUPT_NAMES = {signal.SIGINT: "the user (Ctrl-C)", signal.SIGTERM: "SIGTERM"}  # in cancelled rows' reason


@dataclass
class Running:
    row_id: int
    slot: Slot
    handle: object  # the sampler's handle (an Optuna trial in a search; None in an ablation)
    run: object  # the executor's handle
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


class Interrupted(KeyboardInterrupt):
    """The driver stopped on Ctrl-C (SIGINT) or SIGTERM after cancelling and recording its running trials.

    `signum` says which; the CLI exits with 128 + signum (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)


class Driver:
    def __init__(self, plan: Design, spec_text: str, db: Database, *, address: str | None = None,
                 executor: Executor | None = None, max_parallel: int | None = None, force: bool = False,
                 command: str | None = None, on_progress: Callable[[Progress], None] | None = None):
        """`executor`: what runs the trials; None is Ray (`address`: --address, see `armin.orchestration.cluster`)."""
        if executor is None:
            from armin.orchestration.executors.ray_executor import RayExecutor  # Ray is imported only when used

            executor = RayExecutor(address)
        self.plan, self.spec_text, self.db, self.executor = plan, spec_text, db, executor
        self.sampler = plan.sampler()  # None for an ablation: its design fixes every slot
        self.max_parallel, self.force = max_parallel, force
        self.command = command or " ".join(sys.argv)
        self.on_progress = on_progress or (lambda p: None)
        self.running: dict[object, Running] = {}
        self.pending: list[Slot] = []
        self.expected: set[tuple[int, int]] = set()  # slot keys the plan asks for
        self.stale = False  # an attempt finished since a growing plan was last asked for its slots
        self.direction = plan.objective.direction
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
                row = writer.new_study(s, name=plan.name, kind=plan.kind, goal=plan.goal, spec_text=self.spec_text,
                                       spec_json=spec_json, spec_hash=digest, command=self.command,
                                       versions=versions(), git_commit=sha, git_dirty=dirty)
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
            writer.set_status(s, row.id, "running")
            s.flush()
            return row.id

    def check_study(self, row: Study | None) -> None:
        """Refuse a same-named study of the other kind, or a changed contract without --force: one line
        naming the keys that changed. Run read-only before the lease is taken, and again under it."""
        plan = self.plan
        if row is None:
            return
        if row.kind != plan.kind:
            raise StudyChanged(f"'{plan.name}' is already a {row.kind} in {self.db}; give the {plan.kind} "
                               f"another name")
        digest, stored = plan.digest(), plan.stored_digest(row.spec_json)
        if stored != digest and not self.force:
            changed = changed_paths(plan.contract(json.loads(row.spec_json)), plan.contract(json.loads(plan.spec_json())))
            raise StudyChanged(
                f"{plan.kind} '{plan.name}' was started from a different {plan.contract_name}: "
                f"{summarize_changes(changed)} (stored {stored[:12]}, now {digest[:12]}); rerun with "
                f"--force to continue anyway (recorded as a new spec version), or rename it")

    def add_spec_version(self, study: Study, *, forced: bool, changes: str | None) -> int:
        return writer.add_spec_version(study, forced=forced, changes=changes, command=self.command)

    # ---- recovery: everything from the database -------------------------------------------------
    def recover(self) -> None:
        """Mark attempts left running by a dead driver as lost and queue every unfinished slot."""
        with self.db.session() as s:
            rows = s.query(Trial).filter_by(study_id=self.study_id).order_by(Trial.number).all()
            for old, new in self.plan.reconcile(rows).items():
                print(f"armin: arm {old!r} is now named {new!r} (the same model); its runs count", file=sys.stderr)
            writer.mark_lost_by_driver(rows)
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
        if self.sampler is not None:
            self.sampler.cleanup_stale()  # after our session: Optuna writes the same file

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
            return slot, None if self.sampler is None else self.sampler.handle_for(slot)
        if self.sampler is None:
            return None
        fresh = self.sampler.new_slot(len({config_id for config_id, _ in self.expected}))
        if fresh is None:
            return None
        slot, handle, others = fresh
        self.pending.extend(others)
        self.expected.update(x.key for x in (slot, *others))
        return slot, handle

    def launch(self, slot: Slot, handle: object) -> None:
        run = self.plan.build_run(slot)
        mapping = to_mapping(run)
        optuna_trial_id = None if handle is None else self.sampler.trial_id(handle)
        with self.db.session() as s:
            row_id = writer.start_attempt(
                s, study_id=self.study_id, optuna_trial_id=optuna_trial_id, config_id=slot.config_id,
                replicate=slot.replicate, seed=slot.seed, attempt=slot.attempt, retry_of_id=slot.retry_of_id,
                arm=slot.arm, spec_version=self.spec_version, params=slot.params, run_mapping=mapping, model=run.model)
            number = s.get(Trial, row_id).number
        res = self.plan.resources
        job = Job(run=mapping, number=number, threads=max(1, int(res.cpus)), memory_gb=res.memory_gb, cpus=res.cpus)
        submitted = self.executor.submit(job, res)
        self.running[submitted] = Running(row_id, slot, handle, submitted)

    # ---- events from workers --------------------------------------------------------------------
    def handle(self, submitted: object, event: dict | Unfinished) -> None:
        run = self.running[submitted]
        if isinstance(event, Unfinished):
            state, reason = unfinished(event)
            self.finish(run, state, reason=reason)
            return
        kind = event["kind"]
        if kind == "started":
            with self.db.session() as s:
                writer.record_worker(s, run.row_id, host=event["host"], device=event["device"])
        elif kind == "eval":
            self.record_eval(run, event["step"], event["metrics"])
        elif kind == "result":
            self.finish_result(run, event["result"])
        elif kind == "failed":
            self.finish(run, TrialState.FAILED, reason=event["reason"], tb=event["traceback"])

    def record_eval(self, run: Running, step: int, metrics: dict) -> None:
        with self.db.session() as s:
            writer.record_eval(s, run.row_id, step, metrics)
        value = metrics.get(self.plan.objective.metric)
        if self.sampler is None or value is None or not math.isfinite(value):
            return
        if self.sampler.report(run.handle, value, step):
            self.executor.cancel(run.run)
            self.finish(run, TrialState.PRUNED, value=value)

    def finish_result(self, run: Running, result: dict) -> None:
        with self.db.session() as s:
            writer.record_result(s, run.row_id, result)
        if result["status"] == "diverged":  # a result, not a crash: never retried
            self.finish(run, TrialState.DIVERGED, diverged_step=result["diverged_step"])
        else:
            self.finish(run, TrialState.COMPLETE, value=result["final"].get(self.plan.objective.metric))

    def finish(self, run: Running, state: TrialState, *, value: float | None = None, reason: str | None = None,
               tb: str | None = None, diverged_step: int | None = None) -> None:
        """Record an attempt's outcome, tell the plan, and queue a retry if the outcome allows one."""
        del self.running[run.run]
        with self.db.session() as s:
            writer.finish_attempt(s, run.row_id, state, value=value, reason=reason, tb=tb, diverged_step=diverged_step)
            slot = run.slot
            mine = s.query(Trial).filter_by(study_id=self.study_id, config_id=slot.config_id, seed=slot.seed)
            history = slot_histories(mine.order_by(Trial.number).all())[slot.key]
        if self.sampler is not None:
            self.sampler.tell(run.handle, state, value)  # after our session commits: Optuna writes the same file
        self.executor.done(run.run)
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
        try:  # the cluster is joined and the resources checked before the study row or any trial is touched
            with self.executor.connected(self.plan.resources, Interrupted):
                return self._run()
        finally:
            if not self.lease_lost:
                self.lease.release()

    def _run(self) -> Progress:
        self.study_id = self.open_study()
        if self.sampler is not None:
            self.sampler.open(self.db.url)
        self.recover()  # with the lease held, every RUNNING row is a dead driver's
        self.initial_progress()
        limit = self.max_parallel or self.parallel_capacity()
        cost_hook.before_trials(self)  # the C++ loop built once per node, outside every trial's clock
        status = "interrupted"
        # Ctrl-C and SIGTERM (what Slurm, systemd and Kubernetes send) set a flag that the loop checks,
        # instead of raising wherever the signal lands (in a database write, or inside Ray, which may
        # swallow it); a second signal raises at once. Installed after joining the cluster (Ray's init sets its own
        # SIGTERM handler: sys.exit, which crashes Ray's threads); the previous handlers come back after.
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
                got = self.executor.next_event(list(self.running), POLL_S)
                if got is not None:
                    self.handle(*got)
                self.renew_lease()
            if interrupted:
                raise Interrupted(interrupted[0])
            cost_hook.after_trials(self)  # the arms' cost profile, in one task with a trial's resources
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
                    writer.set_status(s, self.study_id, status)
        return self.progress

    def renew_lease(self) -> None:
        """The heartbeat. If another driver took the study over, stop its trials' twins and write nothing more."""
        try:
            self.lease.renew()
        except LeaseLost:
            self.lease_lost = True
            for run in self.running.values():
                self.executor.cancel(run.run)
            self.running.clear()
            raise

    def cancel_all(self, reason: str) -> None:
        for run in list(self.running.values()):
            self.executor.cancel(run.run)
            self.finish(run, TrialState.CANCELLED, reason=reason)
        self.pending.clear()  # cancelled attempts are re-run by the next `run`/`resume`

    def check_memory_fits(self) -> None:
        """A memory bound no node can reserve would leave every trial waiting for ever: say so instead."""
        need = self.plan.resources.memory_bytes
        if need is None:
            return
        largest = self.executor.capacity().largest_node_memory_bytes
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
        total, res = self.executor.capacity(), self.plan.resources
        fits = [math.floor(total.cpus / res.cpus + 1e-9)]
        if res.gpus > 0:
            fits.append(math.floor(total.gpus / res.gpus + 1e-9))
        if res.memory_bytes is not None:
            fits.append(math.floor(total.memory_bytes / res.memory_bytes + 1e-9))
        return max(1, min(fits))


def slot_histories(rows: list[Trial]) -> dict[tuple[int, int], History]:
    """Each (config_id, seed) slot's attempts, oldest first (`rows` in run order)."""
    return histories(((row.config_id, row.seed), row.state, row.failure_reason) for row in rows)
