"""Failure classes at their source: how a run ended, as the state and reason stored.

`armin.storage.failures` holds the rule that reads them back (which attempts run again); this
module only writes reasons in its vocabulary. The executor names how a run ended without a result
of its own (`armin.orchestration.executors.Unfinished`; Ray's errors are mapped in `RayExecutor`):
- MEMORY_MONITOR: the executor killed the worker because its *node* ran low on memory (Ray's memory
  monitor). The monitor picks its victim by policy (the newest task of the largest group), not by
  culprit, and a trial cannot pass its own memory bound, so the victim is a bystander:
  environmental. Unless the victim itself held more than half the node's memory: then the trial
  filled the node (its bound is more than the node could give) and fails as its own out-of-memory.
- NODE_LOST: the node or its agent went away: environmental.
- RAISED: the job raised outside the worker's own handler (e.g. reading its config):
  deterministic, FAILED with the exception's first line.
- WORKER_DIED, STOPPED: the process died, or the stream ended, with no cause the executor knows
  (SIGKILL, the kernel's OOM killer, a crash in native code): unexplained.
A trial's own out-of-memory is a MemoryError or torch's allocator error raised inside the trial
(under its bound, `armin.orchestration.memory`) and caught by the worker: deterministic.
"""

from __future__ import annotations

from armin.errors import OutOfMemory
from armin.orchestration.executors.base import FailureKind, Unfinished
from armin.orchestration.memory import GIB
from armin.storage import TrialState
from armin.storage.failures import MEMORY_PRESSURE, NODE_LOST

REASON_CHARS = 500  # a stored reason is one line of at most this many characters

# torch's CPU allocator (RuntimeError "... can't allocate memory ...") and the C++ runtime's bad_alloc
_ALLOCATION_FAILURES = ("can't allocate memory", "bad_alloc")


def one_line(text: str) -> str:
    return (text.splitlines()[0] if text else "")[:REASON_CHARS]


def described(e: BaseException) -> str:
    return f"{type(e).__name__}: {one_line(str(e))}"


STOPPED = "the worker stopped without a result"  # the reason of a stream that ended with no result


def unfinished(ended: Unfinished) -> tuple[TrialState, str]:
    """The state and reason of an attempt that ended without a result of its own (module docstring)."""
    kind = ended.kind
    if kind == FailureKind.MEMORY_MONITOR:
        used, limit = ended.used_gb, ended.node_limit_gb
        if used is not None and limit is not None and used > limit / 2:
            return TrialState.FAILED, (f"out of memory: Ray's memory monitor killed the trial while it used {used:.3g} "
                                       f"of its node's {limit:.3g} GB (more than half: the trial filled the node; set "
                                       f"resources.memory_gb below what the node can give)")
        mine = "" if used is None else f" (this trial used {used:.3g} GB)"
        return TrialState.LOST, one_line(f"{MEMORY_PRESSURE}{mine}; {ended.detail}")
    if kind == FailureKind.NODE_LOST:
        return TrialState.LOST, one_line(f"{NODE_LOST}; {ended.detail}")
    if kind == FailureKind.RAISED:
        return TrialState.FAILED, ended.detail
    if kind == FailureKind.STOPPED:
        return TrialState.LOST, STOPPED
    return TrialState.LOST, ended.detail


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
