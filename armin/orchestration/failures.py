"""Failure classes at their source: Ray's errors and a trial's own exceptions, as the state and reason stored.

`armin.storage.failures` holds the rule that reads them back (which attempts run again); this
module only writes reasons in its vocabulary. How Ray 2.60 reports a task that did not finish
(`ray.exceptions`; trials run with max_retries=0, so Ray itself retries nothing, OOM kills included):
- OutOfMemoryError: Ray's memory monitor killed the worker because its *node* ran low on memory.
  The monitor picks its victim by policy (the newest task of the largest group), not by culprit,
  and a trial cannot pass its own memory bound, so the victim is a bystander: environmental.
  Unless the victim itself held more than half the node's memory (the message says how much it
  used, of what limit): then the trial filled the node (its bound is more than the node could give)
  and fails as its own out-of-memory.
- NodeDiedError, LocalRayletDiedError, ObjectLostError and its subclasses (OwnerDiedError, ...):
  the node or its raylet went away: environmental.
- RayTaskError: the task raised outside the worker's own handler (e.g. reading its config):
  deterministic, FAILED with the exception's first line.
- WorkerCrashedError, and anything else: the process died with no cause Ray knows (SIGKILL, the
  kernel's OOM killer, a crash in native code): unexplained.
A trial's own out-of-memory is a MemoryError or torch's allocator error raised inside the trial
(under its bound, `armin.orchestration.memory`) and caught by the worker: deterministic.
"""

from __future__ import annotations

import re

import ray

from armin.errors import OutOfMemory
from armin.orchestration.memory import GIB
from armin.storage import TrialState
from armin.storage.failures import MEMORY_PRESSURE, NODE_LOST

REASON_CHARS = 500  # a stored reason is one line of at most this many characters

# Ray 2.60's memory-monitor message: "... was 6.03GB used / 23.54GB limit ..." and, for the worker it
# killed, "... actual memory used=0.12GB ..."
_NODE_LIMIT = re.compile(r"was [\d.]+GB used / ([\d.]+)GB limit")
_KILLED_USED = re.compile(r"actual memory used=([\d.]+)GB")
_NODE_ERRORS = (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError)
# torch's CPU allocator (RuntimeError "... can't allocate memory ...") and the C++ runtime's bad_alloc
_ALLOCATION_FAILURES = ("can't allocate memory", "bad_alloc")


def one_line(text: str) -> str:
    return (text.splitlines()[0] if text else "")[:REASON_CHARS]


def described(e: BaseException) -> str:
    return f"{type(e).__name__}: {one_line(str(e))}"


def unfinished(e: BaseException) -> tuple[TrialState, str]:
    """The state and reason of an attempt whose stream ended in a Ray error (module docstring)."""
    if isinstance(e, ray.exceptions.OutOfMemoryError):
        used, limit = oom_kill_sizes(str(e))
        if used is not None and limit is not None and used > limit / 2:
            return TrialState.FAILED, (f"out of memory: Ray's memory monitor killed the trial while it used {used:.3g} "
                                       f"of its node's {limit:.3g} GB (more than half: the trial filled the node; set "
                                       f"resources.memory_gb below what the node can give)")
        mine = "" if used is None else f" (this trial used {used:.3g} GB)"
        return TrialState.LOST, one_line(f"{MEMORY_PRESSURE}{mine}; {described(e)}")
    if isinstance(e, _NODE_ERRORS):
        return TrialState.LOST, one_line(f"{NODE_LOST}; {described(e)}")
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = e.cause if isinstance(e.cause, BaseException) else e
        return TrialState.FAILED, described(cause)
    return TrialState.LOST, described(e)


def oom_kill_sizes(message: str) -> tuple[float | None, float | None]:
    """From Ray 2.60's memory-monitor message: GB the killed worker used, and the node's limit in GB (None if absent)."""
    used = _KILLED_USED.search(message)
    limit = _NODE_LIMIT.search(message)
    return (float(used.group(1)) if used else None), (float(limit.group(1)) if limit else None)


def is_out_of_memory(e: BaseException) -> bool:
    """A trial's own allocation failed: Python's MemoryError, torch's CPU allocator, CUDA's out-of-memory,
    or the trainer's `OutOfMemory` (the model did not fit)."""
    if isinstance(e, (MemoryError, OutOfMemory)):
        return True
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e) for s in _ALLOCATION_FAILURES)


def trial_error(e: Exception, bound_bytes: int | None) -> str:
    """The reason of a trial that raised: an out-of-memory names the bound it hit."""
    if not is_out_of_memory(e):
        return described(e)
    import torch

    if isinstance(e, torch.OutOfMemoryError):  # GPU memory: the host bound is not what ran out
        return one_line(f"out of memory on the GPU: {described(e)}")
    bound = "no bound" if bound_bytes is None else f"bound {bound_bytes / GIB:.3g} GiB (resources.memory_gb)"
    return one_line(f"out of memory: {described(e)} [{bound}]")
