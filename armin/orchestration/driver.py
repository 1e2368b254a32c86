"""The driver: the one process that owns the Optuna study (ask-and-tell) and writes the database.

Workers run trials as Ray streaming tasks and only ever talk back to this process, which is what
makes one SQLite file safe (one writer) and lets workers live on other machines with no shared disk.

Units of work. A study has `n_trials` configurations (asked from Optuna), each trained on
`seeds_per_config` seeds: a (config, replicate) *slot*. Every attempt at a slot is one row in
`armin_trials` and one Optuna trial. A slot is finished when an attempt gives a result (complete,
pruned, diverged) or fails by raising; an attempt whose worker or driver died (lost) or that was
cancelled is re-run, linked to the attempt it replaces. Everything needed to resume is in the
database, so a killed driver picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
import ray

from armin.config import to_mapping
from armin.errors import ArminError
from armin.orchestration.provenance import git_commit, versions
from armin.orchestration.spec import StudySpec, build_run, make_pruner, make_sampler, spec_hash, suggest, trial_seed
from armin.orchestration.worker import Fault, trial_stream
from armin.storage import Cost, Database, Metric, Study, Trial, TrialState, encode_value, utcnow

POLL_S = 0.5  # how long the driver waits for any worker event before refreshing progress
LOST_BY_DRIVER = "the driver stopped while this trial was running"


@dataclass
class Slot:
    """One (configuration, replicate) to run, and which attempt this is."""

    config_id: int
    replicate: int
    params: dict
    seed: int
    attempt: int = 1
    retry_of_id: int | None = None


@dataclass
class Running:
    row_id: int
    slot: Slot
    otrial: optuna.Trial
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
    best: float | None = None
    started: float = field(default_factory=time.monotonic)

    def eta_s(self, done_this_session: int) -> float | None:
        if done_this_session == 0:
            return None
        return (time.monotonic() - self.started) / done_this_session * max(self.total - self.done, 0)


class StudyChanged(ArminError):
    pass


class Driver:
    def __init__(self, spec: StudySpec, spec_text: str, db: Database, *, address: str | None = None,
                 max_parallel: int | None = None, force: bool = False, command: str | None = None,
                 faults: dict[int, Fault] | None = None, on_progress: Callable[[Progress], None] | None = None):
        self.spec, self.spec_text, self.db = spec, spec_text, db
        self.address, self.max_parallel, self.force = address, max_parallel, force
        self.command = command or " ".join(sys.argv)
        self.faults = faults or {}  # trial number -> Fault (tests only)
        self.on_progress = on_progress or (lambda p: None)
        self.running: dict[object, Running] = {}
        self.pending: list[Slot] = []
        self.direction = spec.objective.direction
        # row id -> wall-clock marks (begun, launched, started, result_sent, received, written): `armin bench study`
        self.timings: dict[int, dict[str, float]] = {}

    # ---- the study row and the Optuna study -----------------------------------------------------
    def open_study(self) -> int:
        spec, digest = self.spec, spec_hash(self.spec)
        with self.db.session() as s:
            row = s.query(Study).filter_by(name=spec.name).one_or_none()
            if row is None:
                sha, dirty = git_commit()
                row = Study(name=spec.name, kind="search", goal=spec.goal, spec_text=self.spec_text,
                            spec_json=json.dumps(to_mapping(spec), sort_keys=True), spec_hash=digest,
                            optuna_study_name=spec.name, status="running", created_at=utcnow(),
                            updated_at=utcnow(), git_commit=sha, git_dirty=dirty, command=self.command,
                            versions_json=json.dumps(versions()))
                s.add(row)
            elif row.spec_hash != digest and not self.force:
                raise StudyChanged(
                    f"study '{spec.name}' was started from a different spec (stored {row.spec_hash[:12]}, "
                    f"now {digest[:12]}); rerun with --force to continue with the new spec, or rename the study")
            else:
                row.spec_text, row.spec_hash, row.status, row.updated_at = self.spec_text, digest, "running", utcnow()
                row.spec_json = json.dumps(to_mapping(spec), sort_keys=True)
            s.flush()
            return row.id

    def optuna_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(storage=optuna.storages.RDBStorage(self.db.url), study_name=self.spec.name,
                                   sampler=make_sampler(self.spec), pruner=make_pruner(self.spec),
                                   direction=self.direction, load_if_exists=True)

    # ---- recovery: everything from the database -------------------------------------------------
    def recover(self) -> int:
        """Mark attempts left running by a dead driver as lost, queue every unfinished slot.

        Returns the number of configurations already created.
        """
        ostudy, spec = self.ostudy, self.spec
        with self.db.session() as s:
            rows = s.query(Trial).filter_by(study_id=self.study_id).order_by(Trial.number).all()
            for row in rows:
                if row.state == TrialState.RUNNING:
                    row.state, row.failure_reason, row.finished_at = TrialState.LOST, LOST_BY_DRIVER, utcnow()
            latest: dict[tuple[int, int], Trial] = {}
            params: dict[int, dict] = {}
            for row in rows:
                latest[(row.config_id, row.replicate)] = row
                params[row.config_id] = json.loads(row.params_json)
            for config_id, p in sorted(params.items()):
                for rep in range(spec.search.seeds_per_config):
                    row = latest.get((config_id, rep))
                    if row is None:
                        self.pending.append(Slot(config_id, rep, p, trial_seed(spec, config_id, rep)))
                    elif row.state in (TrialState.LOST, TrialState.CANCELLED) and self.may_retry(row):
                        self.pending.append(Slot(config_id, rep, p, row.seed, row.attempt + 1, row.id))
            n_configs = len(params)
        # Optuna trials a dead driver left behind: close them so they never count or get re-asked
        for t in ostudy.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
            ostudy.tell(t.number, state=optuna.trial.TrialState.FAIL)
        for _ in ostudy.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING]):
            ostudy.tell(ostudy.ask(), state=optuna.trial.TrialState.FAIL)
        return n_configs

    def may_retry(self, row: Trial) -> bool:
        """Driver deaths and Ctrl-C never use up retries; lost workers do, up to max_retries."""
        if row.state == TrialState.CANCELLED or row.failure_reason == LOST_BY_DRIVER:
            return True
        return row.attempt <= self.spec.search.max_retries

    # ---- launching ------------------------------------------------------------------------------
    def launch(self, slot: Slot, otrial: optuna.Trial | None = None) -> None:
        begun = time.time()
        if otrial is None:  # a replicate or a retry: an Optuna trial with the slot's fixed params
            self.ostudy.enqueue_trial(slot.params, skip_if_exists=False)
            otrial = self.ostudy.ask()
        run = build_run(self.spec, slot.params, slot.seed)
        m = run.model
        with self.db.session() as s:
            number = (s.query(Trial.number).filter_by(study_id=self.study_id)
                      .order_by(Trial.number.desc()).limit(1).scalar())
            number = 0 if number is None else number + 1
            row = Trial(study_id=self.study_id, number=number, optuna_trial_id=otrial._trial_id,
                        config_id=slot.config_id, replicate=slot.replicate, seed=slot.seed, attempt=slot.attempt,
                        retry_of_id=slot.retry_of_id, state=TrialState.RUNNING,
                        params_json=json.dumps(slot.params, sort_keys=True),
                        config_json=json.dumps(to_mapping(run), sort_keys=True), arch=m.arch,
                        formulation=m.formulation, addressing=m.addressing, cell=m.cell, read=m.read,
                        temperature_kind=m.temperature.kind, hidden_size=m.hidden_size, n_slots=m.n_slots,
                        started_at=utcnow())
            s.add(row)
            s.flush()
            row_id = row.id
        res = self.spec.resources
        launched = time.time()
        remote = ray.remote(trial_stream).options(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=0)
        stream = remote.remote(to_mapping(run), max(1, int(res.cpus)), self.faults.get(number))
        self.running[stream] = Running(row_id, slot, otrial, stream)
        self.timings[row_id] = {"begun": begun, "launched": launched}

    def next_slot(self) -> tuple[Slot, optuna.Trial | None] | None:
        if self.pending:
            return self.pending.pop(0), None
        if self.n_configs >= self.spec.search.n_trials:
            return None
        otrial = self.ostudy.ask()
        params = suggest(otrial, self.spec)
        config_id = self.n_configs
        self.n_configs += 1
        for rep in range(1, self.spec.search.seeds_per_config):
            self.pending.append(Slot(config_id, rep, params, trial_seed(self.spec, config_id, rep)))
        return Slot(config_id, 0, params, trial_seed(self.spec, config_id, 0)), otrial

    # ---- events from workers --------------------------------------------------------------------
    def handle(self, stream) -> None:
        run = self.running[stream]
        try:
            event = ray.get(next(stream))
        except StopIteration:
            self.finish_lost(run, "the worker stopped without a result")
            return
        except (ray.exceptions.RayError, ConnectionError) as e:
            self.finish_lost(run, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500])
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
            self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.FAIL)

    def record_eval(self, run: Running, step: int, metrics: dict) -> None:
        with self.db.session() as s:
            for name, value in metrics.items():
                if name == "step":
                    continue
                v, kind = encode_value(value)
                s.add(Metric(trial_id=run.row_id, step=step, name=name, value=v, value_kind=kind))
        value = metrics.get(self.spec.objective.metric)
        if value is None or not math.isfinite(value):
            return
        run.last_value = value
        run.otrial.report(value, step)
        if run.otrial.should_prune():
            ray.cancel(run.stream, force=True)
            self.finish(run, TrialState.PRUNED, value=value)
            self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.PRUNED)

    def finish_result(self, run: Running, result: dict) -> None:
        with self.db.session() as s:
            s.add(Cost(trial_id=run.row_id, n_params=result["n_params"], time_per_step_s=result["time_per_step_s"],
                       steps_per_s=result["steps_per_s"], wall_time_s=result["wall_time_s"],
                       peak_memory_bytes=result["peak_memory_bytes"]))
        if result["status"] == "diverged":  # a result, not a crash: never retried
            self.finish(run, TrialState.DIVERGED, diverged_step=result["diverged_step"])
            self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.FAIL)  # no finite value to learn from
            return
        value = result["final"].get(self.spec.objective.metric)
        self.finish(run, TrialState.COMPLETE, value=value)
        if value is not None and math.isfinite(value):
            self.ostudy.tell(run.otrial, value)
        else:
            self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.FAIL)

    def finish_lost(self, run: Running, reason: str) -> None:
        row_id = self.finish(run, TrialState.LOST, reason=reason)
        self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.FAIL)
        slot = run.slot
        if slot.attempt <= self.spec.search.max_retries:
            self.pending.insert(0, Slot(slot.config_id, slot.replicate, slot.params, slot.seed, slot.attempt + 1, row_id))

    def finish(self, run: Running, state: TrialState, *, value: float | None = None, reason: str | None = None,
               tb: str | None = None, diverged_step: int | None = None) -> int:
        del self.running[run.stream]
        with self.db.session() as s:
            row = s.get(Trial, run.row_id)
            row.state, row.finished_at = state, utcnow()
            row.value, row.value_kind = encode_value(value)
            row.failure_reason, row.traceback, row.diverged_step = reason, tb, diverged_step
        self.count(state, value)
        return run.row_id

    # ---- progress -------------------------------------------------------------------------------
    def count(self, state: TrialState, value: float | None) -> None:
        p = self.progress
        if state.counts_as_result():
            p.done += 1
            self.done_this_session += 1
        p.failed += state == TrialState.FAILED
        p.pruned += state == TrialState.PRUNED
        p.diverged += state == TrialState.DIVERGED
        p.lost += state == TrialState.LOST
        if state == TrialState.COMPLETE and value is not None and math.isfinite(value):
            better = (lambda a, b: a < b) if self.direction == "minimize" else (lambda a, b: a > b)
            if p.best is None or better(value, p.best):
                p.best = value

    def initial_progress(self) -> Progress:
        self.progress = Progress(total=self.spec.search.n_trials * self.spec.search.seeds_per_config)
        self.done_this_session = 0
        with self.db.session() as s:
            for row in s.query(Trial).filter_by(study_id=self.study_id):
                self.count(row.state, row.value)
        self.done_this_session = 0
        return self.progress

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> Progress:
        self.study_id = self.open_study()
        self.ostudy = self.optuna_study()
        self.n_configs = self.recover()
        self.initial_progress()
        owns_ray = not ray.is_initialized()
        if owns_ray:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        limit = self.max_parallel or self.parallel_capacity()
        status = "interrupted"
        try:
            while True:
                while len(self.running) < limit and (nxt := self.next_slot()) is not None:
                    self.launch(*nxt)
                self.progress.running = len(self.running)
                self.on_progress(self.progress)
                if not self.running:
                    break
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
                for stream in ready:
                    self.handle(stream)
            status = "complete"
        except KeyboardInterrupt:
            self.cancel_all("interrupted by the user (Ctrl-C)")
            raise
        finally:
            with self.db.session() as s:
                row = s.get(Study, self.study_id)
                row.status, row.updated_at = status, utcnow()
            if owns_ray:
                ray.shutdown()
        return self.progress

    def cancel_all(self, reason: str) -> None:
        for run in list(self.running.values()):
            ray.cancel(run.stream, force=True)
            self.finish(run, TrialState.CANCELLED, reason=reason)
            self.ostudy.tell(run.otrial, state=optuna.trial.TrialState.FAIL)

    def parallel_capacity(self) -> int:
        """How many trials fit at once in the cluster's resources."""
        total, res = ray.cluster_resources(), self.spec.resources
        fits = [math.floor(total.get("CPU", 0) / res.cpus + 1e-9)]
        if res.gpus > 0:
            fits.append(math.floor(total.get("GPU", 0) / res.gpus + 1e-9))
        return max(1, min(fits))
