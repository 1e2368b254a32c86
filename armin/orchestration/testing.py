"""Deliberate failures for fault-tolerance tests, as an executor wrapper: production code never sees them.

`FaultyExecutor(inner, faults)` submits trial number N with a `Fault`: the job's training raises
at its first evaluation at or after `at_step` (the worker's own handler records it, traceback and
all), or its worker dies there: SIGKILL of the real worker process (Ray), `WorkerKilled` on an
inline thread. The wrapper rides in the job (`Job.train`), so it runs wherever the trial runs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from armin.orchestration.executors.inline import InlineExecutor, WorkerKilled
from armin.orchestration.worker import Job
from armin.training import RunConfig, RunResult, training_events


@dataclass(frozen=True)
class Fault:
    """A deliberate failure: raise an exception, or kill the worker."""

    kind: Literal["raise", "kill"]
    at_step: int  # acts at the first evaluation at or after this step


@dataclass(frozen=True)
class FaultyTraining:
    """`training_events` with a fault; plain data, so it crosses to a Ray worker with its job."""

    fault: Fault
    in_process: bool  # True: the job runs on a thread of the driver (a kill must not take the driver down)

    def __call__(self, run: RunConfig) -> Iterator:
        for event in training_events(run):
            if not isinstance(event, RunResult) and event["step"] >= self.fault.at_step:
                if self.fault.kind == "raise":
                    raise RuntimeError(f"injected fault at step {event['step']}")
                if self.in_process:
                    raise WorkerKilled(f"injected kill at step {event['step']}")
                os.kill(os.getpid(), signal.SIGKILL)
            yield event


class FaultyExecutor:
    """`inner`, with `faults` (trial number -> Fault) injected into those trials' jobs."""

    def __init__(self, inner: Any, faults: dict[int, Fault]):
        self.inner, self.faults = inner, dict(faults)

    def submit(self, job: Job, resources: Any) -> object:
        fault = self.faults.get(job.number)
        if fault is not None:
            job = replace(job, train=FaultyTraining(fault, in_process=isinstance(self.inner, InlineExecutor)))
        return self.inner.submit(job, resources)

    def __getattr__(self, name: str) -> Any:  # everything else is the inner executor's
        return getattr(self.inner, name)
