"""What runs inside a Ray task: one training run, streamed back to the driver as plain events.

Workers never open the database (the driver is its only writer) and never see Optuna: they get a
resolved RunConfig as a mapping and yield events:
  {"kind": "started", "host", "pid", "device", "t"}  (t: the worker's wall clock, for overhead timing)
  {"kind": "eval", "step", "metrics"}            at every evaluation (the driver may prune here)
  {"kind": "result", "result": RunResult dict, "t"}   once, at the end (completed or diverged)
  {"kind": "failed", "reason", "traceback"}      if training raised (its own out-of-memory included)
Training runs under the trial's memory bound (`armin.orchestration.memory`), so an allocation
beyond it fails here, as a reason naming the bound. A worker process that dies (SIGKILL, Ray's
memory monitor, node loss) yields nothing more; the driver classifies Ray's error
(`armin.orchestration.failures`).
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from armin.config import from_mapping
from armin.orchestration.failures import trial_error
from armin.orchestration.memory import bounded, trial_bound
from armin.training import RunConfig, RunResult, training_events


@dataclass(frozen=True)
class Fault:
    """A deliberate failure for fault-tolerance tests: raise an exception, or SIGKILL the worker."""

    kind: Literal["raise", "kill"]
    at_step: int  # acts at the first evaluation at or after this step


def trial_stream(run_mapping: dict, threads: int = 1, fault: Fault | None = None, *,
                 memory_gb: float | None = None, cpus: float = 1.0) -> Iterator[dict]:
    """`memory_gb` and `cpus` are the spec's resources: the memory bound is `trial_bound(memory_gb, cpus)`."""
    torch.set_num_threads(max(1, threads))
    run = from_mapping(RunConfig, run_mapping, "trial")
    device = run.train.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device = torch.cuda.get_device_name(torch.device(device))
    yield {"kind": "started", "host": socket.gethostname(), "pid": os.getpid(), "device": device, "t": time.time()}
    bound = trial_bound(memory_gb, cpus)
    try:
        with bounded(bound):
            for event in training_events(run):
                if isinstance(event, RunResult):
                    yield {"kind": "result", "result": event.to_dict(), "t": time.time()}
                    return
                if fault is not None and event["step"] >= fault.at_step:
                    if fault.kind == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise RuntimeError(f"injected fault at step {event['step']}")
                yield {"kind": "eval", "step": int(event["step"]), "metrics": dict(event)}
    except Exception as e:  # recorded as FAILED with its traceback (never retried); the study goes on
        yield {"kind": "failed", "reason": trial_error(e, bound), "traceback": traceback.format_exc()}
