"""`InlineExecutor`: trials on threads of the driver's own process, for fast tests of the driver's rules
(retries, recovery, pruning, Ctrl-C) and for the Python API without a cluster.

Each run is the worker's own `trial_stream` on a daemon thread; its events reach the driver through
one queue, so the driver's loop, signals and database writes are exactly the Ray path's. Runs train
one at a time (the others wait, as Ray queues tasks its nodes cannot place yet): a trial's memory
bound (RLIMIT_DATA), torch's thread count and its memory profiler belong to the whole process, and
two profilers at once crash it. `cancel` takes effect at the run's next event (the trainer yields
at every evaluation), or before a waiting run starts. A process that dies
has no in-process equivalent: a job that raises `WorkerKilled` (a test's stand-in for SIGKILL) is
reported as a worker that died, one that raises anything else as a job that raised.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from armin.orchestration import cluster
from armin.orchestration.executors.base import Capacity, Event, ExecutorError, FailureKind, Unfinished
from armin.orchestration.failures import STOPPED, described
from armin.orchestration.memory import node_memory
from armin.orchestration.worker import Job, trial_stream

JOIN_S = 30.0  # how long leaving `connected` waits for cancelled runs to reach their next event
_TRAINING = threading.Lock()  # one trial trains in this process at a time (module docstring)


class WorkerKilled(BaseException):
    """Raised inside an inline job to stand for its worker process dying (a BaseException: the worker's
    own handler, which catches Exception, lets it through, as a SIGKILL would)."""


class _Run:
    def __init__(self, job: Job):
        self.job, self.cancelled, self.thread = job, False, None


class InlineExecutor:
    """One node, this process: `cpus`/`gpus` are what it offers (default: this machine's CPUs, no GPU)."""

    def __init__(self, cpus: float | None = None, gpus: float = 0.0):
        self.cpus = float(cpus if cpus is not None else os.cpu_count() or 1)
        self.gpus = float(gpus)
        self._events: queue.Queue[tuple[_Run, Event]] = queue.Queue()
        self._runs: list[_Run] = []

    @contextmanager
    def connected(self, resources: Any, interrupt: type[BaseException]) -> Iterator[None]:
        nodes = [{"CPU": self.cpus, "GPU": self.gpus}]
        cluster.refuse_unless_fits("the inline executor", resources.cpus, resources.gpus, nodes)
        try:
            yield
        finally:
            deadline = time.monotonic() + JOIN_S
            for run in self._runs:  # a cancelled run stops at its next event; none outlives the driver's run
                run.cancelled = True
                run.thread.join(max(0.0, deadline - time.monotonic()))
            self._runs.clear()

    def submit(self, job: Job, resources: Any) -> object:
        run = _Run(job)
        run.thread = threading.Thread(target=self._work, args=(run,), name=f"trial {job.number}", daemon=True)
        self._runs.append(run)
        run.thread.start()
        return run

    def _work(self, run: _Run) -> None:
        with _TRAINING:
            if not run.cancelled:
                self._stream(run)

    def _stream(self, run: _Run) -> None:
        stream = trial_stream(run.job)
        try:
            for event in stream:
                if run.cancelled:
                    return
                self._events.put((run, event))
            self._events.put((run, Unfinished(FailureKind.STOPPED, STOPPED)))
        except WorkerKilled as e:
            self._events.put((run, Unfinished(FailureKind.WORKER_DIED, described(e))))
        except Exception as e:  # outside the worker's own handler, e.g. reading its config
            self._events.put((run, Unfinished(FailureKind.RAISED, described(e))))
        finally:
            stream.close()

    def next_event(self, handles: list[object], timeout_s: float) -> tuple[object, Event] | None:
        wanted = {id(h) for h in handles}
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                run, event = self._events.get(timeout=left)
            except queue.Empty:
                return None
            if id(run) in wanted and not run.cancelled:
                return run, event
        return None

    def cancel(self, handle: object) -> None:
        handle.cancelled = True

    def done(self, handle: object) -> None:
        if handle in self._runs and not handle.thread.is_alive():
            self._runs.remove(handle)

    def capacity(self) -> Capacity:
        memory = node_memory()
        return Capacity(cpus=self.cpus, gpus=self.gpus, memory_bytes=memory, largest_node_memory_bytes=memory)

    def node_names(self) -> list[str]:
        return ["this process"]

    def on_each_node(self, fn: Callable[[], Any], wait: Callable[[], None]) -> list[Any]:
        return [self.call(fn, (), None, wait)]

    def call(self, fn: Callable[..., Any], args: tuple, resources: Any, wait: Callable[[], None]) -> Any:
        try:
            return fn(*args)
        except Exception as e:
            raise ExecutorError(described(e)) from e
