"""`RayExecutor`: trials as Ray streaming tasks on a local or joined cluster. Every Ray call the driver
and its cost hooks make is here, and Ray's errors become `Unfinished` events here (how Ray 2.60 reports a task
that did not finish: trials run with max_retries=0, so Ray itself retries nothing, OOM kills included):
- OutOfMemoryError: the memory monitor killed the worker because its node ran low (MEMORY_MONITOR,
  with what the victim used and the node's limit, read from the message);
- NodeDiedError, LocalRayletDiedError, ObjectLostError and its subclasses (OwnerDiedError, ...):
  the node or its raylet went away (NODE_LOST);
- RayTaskError: the task raised outside the worker's own handler (RAISED, with its cause);
- WorkerCrashedError, a lost connection, and anything else: WORKER_DIED.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray

from armin.orchestration import cluster
from armin.orchestration.executors.base import Capacity, Event, ExecutorError, FailureKind, Unfinished
from armin.orchestration.failures import STOPPED, described
from armin.orchestration.worker import Job, trial_stream

# Ray 2.60's memory-monitor message: "... was 6.03GB used / 23.54GB limit ..." and, for the worker it
# killed, "... actual memory used=0.12GB ..."
_NODE_LIMIT = re.compile(r"was [\d.]+GB used / ([\d.]+)GB limit")
_KILLED_USED = re.compile(r"actual memory used=([\d.]+)GB")
_NODE_ERRORS = (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError)
_ERRORS = (ray.exceptions.RayError, ConnectionError)  # how a task or the connection to it fails
WAIT_S = 1.0  # while waiting on a helper task, `wait()` (the driver's lease heartbeat) runs this often


def oom_kill_sizes(message: str) -> tuple[float | None, float | None]:
    """From Ray 2.60's memory-monitor message: GB the killed worker used, and the node's limit in GB (None if absent)."""
    used = _KILLED_USED.search(message)
    limit = _NODE_LIMIT.search(message)
    return (float(used.group(1)) if used else None), (float(limit.group(1)) if limit else None)


def failure_of(e: BaseException) -> Unfinished:
    """A Ray error (or a lost connection) as the executor-neutral failure (module docstring)."""
    if isinstance(e, ray.exceptions.OutOfMemoryError):
        used, limit = oom_kill_sizes(str(e))
        return Unfinished(FailureKind.MEMORY_MONITOR, described(e), used_gb=used, node_limit_gb=limit)
    if isinstance(e, _NODE_ERRORS):
        return Unfinished(FailureKind.NODE_LOST, described(e))
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = e.cause if isinstance(e.cause, BaseException) else e
        return Unfinished(FailureKind.RAISED, described(cause))
    return Unfinished(FailureKind.WORKER_DIED, described(e))


def _alive() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


class RayExecutor:
    """Trials on Ray: `address` as `--address` (None: $RAY_ADDRESS, else a fresh local cluster)."""

    def __init__(self, address: str | None = None):
        self.address = address

    @contextmanager
    def connected(self, resources: Any, interrupt: type[BaseException]) -> Iterator[None]:
        with cluster.connected(self.address, resources.cpus, resources.gpus, interrupt):
            yield

    def submit(self, job: Job, resources: Any) -> object:
        memory = {} if resources.memory_bytes is None else {"memory": resources.memory_bytes}
        remote = ray.remote(trial_stream).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0,
                                                  **memory)
        return remote.remote(job)  # a ray.ObjectRefGenerator: the handle

    def next_event(self, handles: list[object], timeout_s: float) -> tuple[object, Event] | None:
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout_s)
        if not ready:
            return None
        stream = ready[0]
        try:
            return stream, ray.get(next(stream))
        except StopIteration:
            return stream, Unfinished(FailureKind.STOPPED, STOPPED)
        except _ERRORS as e:
            return stream, failure_of(e)

    def cancel(self, handle: object) -> None:
        ray.cancel(handle, force=True)

    def done(self, handle: object) -> None:
        pass  # Ray frees a finished stream when its last reference goes

    def capacity(self) -> Capacity:
        total = ray.cluster_resources()
        largest = max((n["Resources"].get("memory", 0) for n in _alive()), default=0)
        return Capacity(cpus=total.get("CPU", 0), gpus=total.get("GPU", 0), memory_bytes=total.get("memory", 0),
                        largest_node_memory_bytes=largest)

    def node_names(self) -> list[str]:
        return [n["NodeID"] for n in _alive()]

    def on_each_node(self, fn: Callable[[], Any], wait: Callable[[], None]) -> list[Any]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(fn)
        return self._get([task.options(num_cpus=0, max_retries=0,
                                       scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n, soft=False))
                          .remote() for n in self.node_names()], wait)

    def call(self, fn: Callable[..., Any], args: tuple, resources: Any, wait: Callable[[], None]) -> Any:
        task = ray.remote(fn).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0)
        return self._get([task.remote(*args)], wait)[0]

    @staticmethod
    def _get(refs: list, wait: Callable[[], None]) -> list:
        """`ray.get(refs)`, calling `wait()` meanwhile (a build or a profile can outlast the lease's staleness)."""
        try:
            while True:
                _, pending = ray.wait(refs, num_returns=len(refs), timeout=WAIT_S)
                if not pending:
                    return ray.get(refs)
                wait()
        except _ERRORS as e:
            raise ExecutorError((str(e).strip() or type(e).__name__)) from e
