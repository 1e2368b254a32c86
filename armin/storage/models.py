"""The database schema: every armin table, read top to bottom. This file is the contract.

One SQLite file holds a study: Optuna's own tables (`studies`, `trials`, ...) and ours, all prefixed
`armin_` so the two never clash. The study driver is the only writer; reports read while it runs.

Conventions the rest of armin relies on:
- Datetimes are timezone-aware UTC in Python (`utcnow()`); a naive datetime is refused on write.
  On disk they are naive UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`), so raw SQL compares them correctly.
- Objective and metric values go through `encode_value`: NaN and +/-inf are stored as a NULL value
  plus a `ValueKind`, so a diverged run is a fact in the DB, not a missing number. A CHECK on each
  table keeps value and kind consistent.
- Anything a report filters on (state, arm, component flags, seed) is a typed column, not JSON.
- Changing any table means bumping `SCHEMA_VERSION`; `Database.open` refuses files of another version.
- Integers that may pass 2**31 are `BigInteger` (63-bit seeds, parameter counts, bytes, FLOPs): the same
  INTEGER storage in SQLite, BIGINT on a server, whose INTEGER is 32-bit.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from armin.errors import StorageError

SCHEMA_VERSION = 2  # bump on any change to the tables below; old files are then refused, not migrated
# 1 -> 2: the spec history (armin_spec_versions, armin_trials.spec_version); trial costs without warm-up
# (armin_costs.warmup_s, warmup_steps, cpu_time_per_step_s; peak_memory_bytes is tensor memory of one step,
# NULL when not measured) and the per-arm cost profiles (armin_cost_profiles, armin_cost_samples).
SCHEMA_VERSION_KEY = "schema_version"  # the armin_meta row holding SCHEMA_VERSION as text
STUDY_KINDS = ("search", "ablation")
#: "complete": every slot has a result; "failed": the study ended with slots that failed for good
#: (results < slots; `armin study status` says how many); "interrupted": Ctrl-C/SIGTERM; "running".
STUDY_STATUSES = ("running", "complete", "interrupted", "failed")


#: The typed copies of the ModelConfig factors on armin_trials, so reports filter without parsing JSON: column name ->
#: the ModelConfig attribute it copies (dotted for a nested dataclass). The one list: the driver's and the benchmark's
#: writes (`component_values`) and the `trials` view of `armin query` use it; tests check it against ModelConfig.
COMPONENT_COLUMNS: dict[str, str] = {
    "arch": "arch",
    "formulation": "formulation",
    "addressing": "addressing",
    "cell": "cell",
    "read": "read",
    "temperature_kind": "temperature.kind",  # the temperature schedule's kind
    "hidden_size": "hidden_size",
    "n_slots": "n_slots",
}


def component_values(model: Any) -> dict[str, Any]:
    """The `armin_trials` component columns of a `ModelConfig` (`Trial(**component_values(run.model), ...)`)."""
    out = {}
    for column, attribute in COMPONENT_COLUMNS.items():
        value = model
        for part in attribute.split("."):
            value = getattr(value, part)
        out[column] = value
    return out


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the only kind of datetime the schema accepts."""
    return datetime.now(timezone.utc)


# ---- enums ----------------------------------------------------------------------------------------


#: The failure reason of attempts a driver left RUNNING when it stopped (marked LOST by the next one).
LOST_BY_DRIVER = "the driver stopped while this trial was running"


class TrialState(enum.IntEnum):
    """What became of one attempt. Stored by name, so the numbers may be reordered freely."""

    RUNNING = 0
    COMPLETE = 1
    PRUNED = 2
    DIVERGED = 3  # the training loss became NaN/inf: a result about the configuration, not a crash
    FAILED = 4  # an exception in the trial (its own out-of-memory included); traceback stored; never retried
    LOST = 5  # the worker vanished (node died, driver restarted, process killed) without reporting
    CANCELLED = 6  # stopped by the user or the driver before it finished

    def is_finished(self) -> bool:
        return self != TrialState.RUNNING

    def counts_as_result(self) -> bool:
        """True if the attempt says something about its configuration (it is not retried)."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.DIVERGED)


class ValueKind(enum.IntEnum):
    """How to read a stored float: FINITE means the value column holds it; otherwise it is NULL."""

    FINITE = 0
    NAN = 1
    INF_POS = 2
    INF_NEG = 3


def encode_value(x: float | None) -> tuple[float | None, ValueKind | None]:
    """A float as (value column, value_kind column); None (no value at all) gives (None, None)."""
    if x is None:
        return None, None
    x = float(x)
    if math.isnan(x):
        return None, ValueKind.NAN
    if math.isinf(x):
        return None, ValueKind.INF_POS if x > 0 else ValueKind.INF_NEG
    return x, ValueKind.FINITE


def decode_value(value: float | None, kind: ValueKind | None) -> float | None:
    """The inverse of `encode_value`."""
    if kind is None:
        if value is not None:
            raise ValueError(f"stored value {value!r} has no value_kind")
        return None
    if kind == ValueKind.FINITE:
        if value is None:
            raise ValueError("value_kind is FINITE but the stored value is NULL")
        return float(value)
    return {ValueKind.NAN: math.nan, ValueKind.INF_POS: math.inf, ValueKind.INF_NEG: -math.inf}[kind]


def _enum_column(cls: type[enum.Enum], name: str) -> Enum:
    # By name (not number) so the file reads well in plain SQL; the CHECK rejects unknown names.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16, validate_strings=True)


# CHECK that value is set exactly when value_kind is FINITE (a NULL kind means no value at all).
_VALUE_MATCHES_KIND = "(value IS NOT NULL) = (COALESCE(value_kind, '') = 'FINITE')"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC on disk. A naive datetime is refused: it has no known zone."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: store aware UTC datetimes (utcnow())")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


# ---- tables ---------------------------------------------------------------------------------------


class Base(DeclarativeBase):
    # Named constraints, so a future migration can refer to them.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Meta(Base):
    """Key/value facts about the file itself: `schema_version`, and one `driver_lease:<study name>` row per
    study a driver is running (JSON: owner, host, pid, since, heartbeat; see armin.storage.lease)."""

    __tablename__ = "armin_meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


class Study(Base):
    """One `armin run` of a spec: a search or an ablation, with everything needed to reproduce it."""

    __tablename__ = "armin_studies"
    __table_args__ = (
        CheckConstraint(f"kind IN {STUDY_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {STUDY_STATUSES!r}", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)  # the user-facing handle: `armin query NAME`
    kind: Mapped[str] = mapped_column(String)  # "search" | "ablation" (STUDY_KINDS)
    goal: Mapped[str] = mapped_column(Text)  # the spec's one-line question this study answers
    # The CURRENT spec (the latest armin_spec_versions row; earlier ones are kept there):
    spec_text: Mapped[str] = mapped_column(Text)  # the TOML exactly as written, comments included
    spec_json: Mapped[str] = mapped_column(Text)  # the resolved spec (defaults filled in), JSON
    spec_hash: Mapped[str] = mapped_column(String, index=True)  # the plan's digest: resume only into the same spec
    optuna_study_name: Mapped[str] = mapped_column(String)  # Optuna's study in this same file
    status: Mapped[str] = mapped_column(String, default="running")  # STUDY_STATUSES
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    git_commit: Mapped[str | None] = mapped_column(String)  # None outside a git checkout
    git_dirty: Mapped[bool | None] = mapped_column()  # uncommitted changes at launch: git_commit alone does not reproduce
    command: Mapped[str | None] = mapped_column(Text)  # the exact command line, to re-run it
    versions_json: Mapped[str] = mapped_column(Text, default="{}")  # python/torch/optuna/ray/armin versions, JSON

    trials: Mapped[list[Trial]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Trial.number")
    spec_versions: Mapped[list[SpecVersion]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="SpecVersion.version")

    @classmethod
    def find_or_raise_by_name(cls, session: Session, name: str) -> Study:
        study = session.scalar(select(cls).where(cls.name == name))
        if study is None:
            raise StorageError(f"no study named {name!r} in {_db_path(session)}")
        return study


class SpecVersion(Base):
    """One version of a study's spec. A run whose resolved spec differs from the latest version appends one
    (`--force` past a changed contract, or arms/seeds added to an ablation), so the spec a trial ran under is
    never overwritten: each trial row names its version, and the report shows the history."""

    __tablename__ = "armin_spec_versions"
    __table_args__ = (UniqueConstraint("study_id", "version"), CheckConstraint("version >= 1", name="version_positive"))

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("armin_studies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()  # 1-based, in order of use
    spec_text: Mapped[str] = mapped_column(Text)  # as written
    spec_json: Mapped[str] = mapped_column(Text)  # resolved, JSON
    spec_hash: Mapped[str] = mapped_column(String)  # the plan's digest of this version
    forced: Mapped[bool] = mapped_column(default=False)  # True: its digest differs from the version before (--force)
    changes: Mapped[str | None] = mapped_column(Text)  # what differs from the version before, one line; None for 1
    command: Mapped[str | None] = mapped_column(Text)  # the command line that started it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="spec_versions")


class Trial(Base):
    """One ATTEMPT at running one configuration with one seed; a retry is a new row."""

    __tablename__ = "armin_trials"
    __table_args__ = (
        # The driver is the single writer, so numbers are unique: a resume that re-inserts fails loudly.
        UniqueConstraint("study_id", "number"),
        Index("ix_armin_trials_study_id_state", "study_id", "state"),
        CheckConstraint(_VALUE_MATCHES_KIND, name="value_matches_kind"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("replicate >= 0", name="replicate_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("armin_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()  # 0-based order of creation within the study
    optuna_trial_id: Mapped[int | None] = mapped_column()  # Optuna's `trials.trial_id` in this file; None if unsampled
    config_id: Mapped[int] = mapped_column()  # which configuration of the study; all its seeds and retries share it
    replicate: Mapped[int] = mapped_column()  # 0-based seed index within the configuration
    seed: Mapped[int] = mapped_column(BigInteger)  # the RunConfig seed used (63-bit: seeding.derive_seed of study seed, ...)
    spec_version: Mapped[int] = mapped_column(default=1, server_default="1")  # the armin_spec_versions.version it ran under
    attempt: Mapped[int] = mapped_column(default=1)  # 1-based; > 1 for retries of a LOST/FAILED attempt
    retry_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("armin_trials.id", ondelete="SET NULL"))  # the attempt this one replaces
    state: Mapped[TrialState] = mapped_column(_enum_column(TrialState, "trial_state"), default=TrialState.RUNNING)
    value: Mapped[float | None] = mapped_column(Float)  # the objective; NULL when not finite or not reported
    value_kind: Mapped[ValueKind | None] = mapped_column(_enum_column(ValueKind, "value_kind"))  # see encode_value
    params_json: Mapped[str] = mapped_column(Text, default="{}")  # the searched parameters only, JSON
    config_json: Mapped[str] = mapped_column(Text, default="{}")  # the full resolved RunConfig, JSON

    # The component columns (COMPONENT_COLUMNS: typed copies of the ModelConfig factors); None if not applicable.
    arch: Mapped[str | None] = mapped_column(String)
    formulation: Mapped[str | None] = mapped_column(String)
    addressing: Mapped[str | None] = mapped_column(String)
    cell: Mapped[str | None] = mapped_column(String)
    read: Mapped[str | None] = mapped_column(String)
    temperature_kind: Mapped[str | None] = mapped_column(String)
    hidden_size: Mapped[int | None] = mapped_column()
    n_slots: Mapped[int | None] = mapped_column()
    arm: Mapped[str | None] = mapped_column(String)  # the ablation arm's name; None in a search

    diverged_step: Mapped[int | None] = mapped_column()  # first step with a NaN/inf training loss
    failure_reason: Mapped[str | None] = mapped_column(Text)  # one line for tables: "ValueError: ..."
    traceback: Mapped[str | None] = mapped_column(Text)  # the full traceback of a FAILED attempt
    worker_host: Mapped[str | None] = mapped_column(String)  # hostname that ran it (Ray node)
    device: Mapped[str | None] = mapped_column(String)  # "cpu" or the GPU's name, as RunResult.device
    data_source: Mapped[str | None] = mapped_column(String)  # RunResult.data_source: a shipped sample says so
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    study: Mapped[Study] = relationship(back_populates="trials")
    metrics: Mapped[list[Metric]] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True,
        order_by=lambda: (Metric.step, Metric.name))
    cost: Mapped[Cost | None] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True, uselist=False)

    @property
    def objective(self) -> float | None:
        """The objective as a float (NaN/inf restored), None if none was recorded."""
        return decode_value(self.value, self.value_kind)

    def set_objective(self, x: float | None) -> None:
        self.value, self.value_kind = encode_value(x)

    @classmethod
    def find_or_raise_by_number(cls, session: Session, study_id: int, number: int) -> Trial:
        trial = session.scalar(select(cls).where(cls.study_id == study_id, cls.number == number))
        if trial is None:
            raise StorageError(f"no trial number {number} in study id {study_id} in {_db_path(session)}")
        return trial


class Metric(Base):
    """One metric of one attempt at one evaluation step (the intermediate values reports plot)."""

    __tablename__ = "armin_metrics"
    __table_args__ = (
        # Also serves as the index on trial_id (its leading column).
        UniqueConstraint("trial_id", "step", "name"),
        CheckConstraint(_VALUE_MATCHES_KIND, name="value_matches_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("armin_trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column()  # training step of the evaluation
    name: Mapped[str] = mapped_column(String)  # e.g. "eval_loss", "train_loss", "read_entropy"
    value: Mapped[float | None] = mapped_column(Float)  # NULL when not finite; see value_kind
    value_kind: Mapped[ValueKind] = mapped_column(_enum_column(ValueKind, "value_kind"))

    trial: Mapped[Trial] = relationship(back_populates="metrics")

    @classmethod
    def of(cls, step: int, name: str, x: float) -> Metric:
        """A row for float `x` (NaN/inf encoded); attach it with `trial.metrics.append(...)`."""
        value, kind = encode_value(x)
        if kind is None:
            raise ValueError(f"metric {name!r} at step {step} has no value")
        return cls(step=step, name=name, value=value, value_kind=kind)

    @property
    def as_float(self) -> float:
        return decode_value(self.value, self.value_kind)  # type: ignore[return-value]  # kind is never NULL


class Cost(Base):
    """What an attempt cost to run (RunResult's timing and memory fields); one row per finished attempt."""

    __tablename__ = "armin_costs"

    trial_id: Mapped[int] = mapped_column(ForeignKey("armin_trials.id", ondelete="CASCADE"), primary_key=True)
    n_params: Mapped[int] = mapped_column(BigInteger)  # trainable parameters of the model
    time_per_step_s: Mapped[float] = mapped_column(Float)  # training steps after the warm-up only; 0: none timed
    steps_per_s: Mapped[float] = mapped_column(Float)
    wall_time_s: Mapped[float] = mapped_column(Float)  # whole run, evaluation included (C++ loop loaded before)
    # Peak tensor bytes of one training step above what was allocated before it (CPU: profiler allocator
    # events; GPU: max_memory_allocated), the quantity the cost profile measures; NULL: the run stopped first.
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The first warmup_steps steps, timed apart. NULL only in rows of a schema-1 file brought forward by
    # `armin db upgrade`: that armin did not time the warm-up apart (its time_per_step_s includes it).
    warmup_s: Mapped[float | None] = mapped_column(Float, default=0.0)
    warmup_steps: Mapped[int | None] = mapped_column(default=0)
    # The timed steps on the process's CPU time: the cost profile's clock on one thread, which time slices lost to
    # other processes do not inflate (wall time does); NULL in rows written without it.
    cpu_time_per_step_s: Mapped[float | None] = mapped_column(Float)

    trial: Mapped[Trial] = relationship(back_populates="cost")

    @classmethod
    def from_run_result(cls, result: Any, **keys: Any) -> Cost:
        """The cost row of a `armin.training.RunResult`, or of its dict (`to_dict`, as workers send it)."""
        get = result.get if isinstance(result, dict) else lambda name, default=None: getattr(result, name, default)
        return cls(**keys, n_params=get("n_params"), time_per_step_s=get("time_per_step_s"),
                   steps_per_s=get("steps_per_s"), wall_time_s=get("wall_time_s"),
                   peak_memory_bytes=get("peak_memory_bytes"), warmup_s=get("warmup_s", 0.0),
                   warmup_steps=get("warmup_steps", 0), cpu_time_per_step_s=get("cpu_time_per_step_s"))


class CostProfile(Base):
    """One arm's cost profile: its configuration measured like a benchmark, after the study's trials.

    All arms of a study are profiled in one process on the device their trials use, interleaved,
    warm, over paired rounds (armin.costs.profile); the rounds are in `armin_cost_samples`.
    A search profiles its best configurations, `arm` naming each ("config 3").
    """

    __tablename__ = "armin_cost_profiles"
    __table_args__ = (UniqueConstraint("study_id", "arm"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("armin_studies.id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String)
    config_json: Mapped[str] = mapped_column(Text)  # the RunConfig profiled (seed: the study's first), JSON
    n_params: Mapped[int] = mapped_column(BigInteger)
    flops_per_step: Mapped[int] = mapped_column(BigInteger)  # torch.utils.flop_counter, forward + backward, eager loop
    peak_step_bytes: Mapped[int | None] = mapped_column(BigInteger)  # as armin_costs.peak_memory_bytes; NULL: diverged
    batch_size: Mapped[int] = mapped_column()
    device: Mapped[str] = mapped_column(String)  # "cpu" or the GPU's name
    host: Mapped[str | None] = mapped_column(String)  # the node that measured it
    threads: Mapped[int] = mapped_column()  # torch intra-op threads: a trial's (its CPUs)
    clock: Mapped[str] = mapped_column(String)  # "cpu time" (one CPU thread: preemption-free) or "wall"
    warmup_rounds: Mapped[int] = mapped_column()  # untimed rounds before the first sample
    steps_per_round: Mapped[int] = mapped_column()  # training steps (and inference batches) per sample, its median
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    samples: Mapped[list[CostSample]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", passive_deletes=True,
        order_by=lambda: CostSample.round)


class CostSample(Base):
    """One round of one arm's profile: rounds are the paired units of the speed verdicts (same batches)."""

    __tablename__ = "armin_cost_samples"
    __table_args__ = (
        UniqueConstraint("profile_id", "round"),
        CheckConstraint("train_step_s > 0 AND infer_s > 0 AND elements > 0", name="positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("armin_cost_profiles.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column()  # 0-based; every arm's round r ran on the same batches
    train_step_s: Mapped[float] = mapped_column(Float)  # median seconds of the round's training steps (training_step)
    infer_s: Mapped[float] = mapped_column(Float)  # median seconds of its no-grad eval-mode forwards of one batch
    elements: Mapped[float] = mapped_column(Float)  # mean sequence elements (time steps x sequences) per batch

    profile: Mapped[CostProfile] = relationship(back_populates="samples")


def _db_path(session: Session) -> str:
    """The database file (or server) behind a session, for error messages."""
    url = session.get_bind().url
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=True)
    database = url.database or "the database"
    return unquote(database.removeprefix("file:"))  # readonly engines use a `file:` URI
