"""What runs where a trial runs (a Ray worker, or a driver's thread): one training run, streamed back as events.

Workers never open the database (the driver is its only writer) and never see Optuna: they get a
`Job` (a resolved RunConfig as a mapping, and its resources) and yield events:
  {"kind": "started", "host", "pid", "device", "t"}  (t: the worker's wall clock, for overhead timing)
  {"kind": "eval", "step", "metrics"}            at every evaluation (the driver may prune here)
  {"kind": "result", "result": RunResult dict, "t"}   once, at the end (completed or diverged)
  {"kind": "failed", "reason", "traceback"}      if training raised (its own out-of-memory included)
Training runs under the trial's memory bound (`armin.orchestration.memory`), so an allocation
beyond it fails here, as a reason naming the bound. A worker process that dies (SIGKILL, Ray's
memory monitor, node loss) yields nothing more; the executor names the cause
(`armin.orchestration.executors`) and `armin.orchestration.failures` stores it.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from armin.config import from_mapping
from armin.orchestration.failures import trial_error
from armin.orchestration.memory import bounded, trial_bound
from armin.training import RunConfig, RunResult, training_events


@dataclass(frozen=True)
class Job:
    """One attempt as plain data, what crosses the process boundary to a worker."""

    run: dict  # the resolved RunConfig, as a mapping
    number: int  # the trial's number in its study (test wrappers pick faults by it)
    threads: int = 1  # torch threads: the trial's whole CPUs
    memory_gb: float | None = None  # the spec's resources: the bound is `trial_bound(memory_gb, cpus)`
    cpus: float = 1.0
    # what trains the run: training_events; a test wrapper (armin.orchestration.testing) injects faults here
    train: Callable[[RunConfig], Iterator] = training_events


def trial_stream(job: Job) -> Iterator[dict]:
    """The job's events. Its name is the Ray worker's process title while a trial runs (`ray::trial_stream`)."""
    torch.set_num_threads(max(1, job.threads))
    run = from_mapping(RunConfig, job.run, "trial")
    device = run.train.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name(torch.device(device))
    yield {"kind": "started", "host": socket.gethostname(), "pid": os.getpid(), "device": device, "t": time.time()}
    bound = trial_bound(job.memory_gb, job.cpus)
    try:
        with bounded(bound):
            for event in job.train(run):
                if isinstance(event, RunResult):
                    yield {"kind": "result", "result": event.to_dict(), "t": time.time()}
                    return
                yield {"kind": "eval", "step": int(event["step"]), "metrics": dict(event)}
    except Exception as e:  # recorded as FAILED with its traceback (never retried); the study goes on
        yield {"kind": "failed", "reason": trial_error(e, bound), "traceback": traceback.format_exc()}
