"""The engine seam: what the driver needs from whatever runs its trials, and nothing about how.

The driver submits a `Job` (a run as plain data) with the spec's resources and reads each run's
events back: the worker's own events (`armin.orchestration.worker`: started, eval, result,
failed) or an `Unfinished` when the run ended without saying so. An `Unfinished` names its cause in
executor-neutral words (`FailureKind`); `armin.orchestration.failures.unfinished` turns it into
the stored state and reason, so the retry rule reads the same reasons whatever ran the trial.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # a leaf module: the worker and the failure reasons import it
    from armin.orchestration.worker import Job


class FailureKind(enum.Enum):
    """Why a run ended without a result event of its own."""

    NODE_LOST = "node lost"  # the run's machine (or its agent) went away: environmental
    MEMORY_MONITOR = "memory monitor"  # killed because its node ran low on memory: environmental, unless it filled it
    WORKER_DIED = "worker died"  # the process died with no known cause (SIGKILL, a native crash): unexplained
    RAISED = "raised"  # the job raised outside the worker's own handler (e.g. reading its config): deterministic
    STOPPED = "stopped"  # the stream ended without a result: unexplained


@dataclass(frozen=True)
class Unfinished:
    kind: FailureKind
    detail: str  # "ErrorType: first line" of what the executor saw (the cause's, for RAISED)
    used_gb: float | None = None  # MEMORY_MONITOR: what the killed run used, if the executor knows
    node_limit_gb: float | None = None  # MEMORY_MONITOR: its node's memory limit, if known


Event = dict | Unfinished  # a worker event (its "kind" key) or how the run ended without one


@dataclass(frozen=True)
class Capacity:
    """What the cluster can give at once: summed over live nodes, and its largest node's memory."""

    cpus: float
    gpus: float
    memory_bytes: float  # the executor's reservable memory (Ray's `memory` resource), summed
    largest_node_memory_bytes: float


class ExecutorError(Exception):
    """A helper task (`on_each_node`, `call`) did not finish; its message is the executor's, first line first."""


class Executor(Protocol):
    def connected(self, resources: Any, interrupt: type[BaseException]) -> AbstractContextManager[None]:
        """Join (or start) the cluster for one driver run and check one trial's resources fit on one node."""

    def submit(self, job: Job, resources: Any) -> object:
        """Start one run with its reservation (the spec's `[resources]`); returns its handle."""

    def next_event(self, handles: list[object], timeout_s: float) -> tuple[object, Event] | None:
        """The next event of one of these runs, or None if none came within `timeout_s`."""

    def cancel(self, handle: object) -> None:
        """Stop a run now (pruned, interrupted, or another driver owns the study); its events are dropped."""

    def done(self, handle: object) -> None:
        """The driver has recorded the run's outcome: the executor may forget it."""

    def capacity(self) -> Capacity: ...

    def on_each_node(self, fn: Callable[[], Any], wait: Callable[[], None]) -> list[Any]:
        """`fn()` once on every live node, returning the results in node order; `wait()` runs while waiting."""

    def node_names(self) -> list[str]:
        """The live nodes, in `on_each_node`'s order, for messages."""

    def call(self, fn: Callable[..., Any], args: tuple, resources: Any, wait: Callable[[], None]) -> Any:
        """`fn(*args)` as one task with a trial's reservation; `wait()` runs while waiting."""
