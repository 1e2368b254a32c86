"""Failure classes and the retry rule: which finished attempts run again, decided from stored rows alone.

The driver (when an attempt ends, and on resume), `armin study status` and the report all read a
slot's attempts through `retry_due`, so they agree on which slots are final. A slot's *history* is
its attempts' (state, failure_reason), oldest first; the latest decides, the earlier ones count.

- A result (complete, pruned, diverged) is final.
- Deterministic (FAILED: an exception in the trial, its own out-of-memory under its memory bound
  included): the same configuration and seed fail the same way again, so it is final at once and
  keeps its reason.
- Environmental (LOST for a cause outside the trial: its node died, Ray's memory monitor killed it
  because the node ran low, or its driver died): run again without using the slot's `max_retries`,
  at most `MAX_ENVIRONMENTAL_LOSSES` times per slot. The bound keeps a slot that always meets the
  same "environment" (it is the process filling the node, or it takes its node down) from looping a
  study forever; 10 is far above what a transient fault does to one slot and caps the waste at 10 runs.
- Unexplained (LOST otherwise: the worker process died with no cause Ray knows, e.g. a crash in
  native code or the kernel's OOM killer): it may be the trial's fault or not, so it is retried up
  to `max_retries` times.
- Cancelled (Ctrl-C, SIGTERM): always re-run by the next `run`/`resume`, which a person or a
  scheduler starts, so no loop runs unattended.

The class of a LOST attempt is in its stored reason: environmental reasons start with one of
`ENVIRONMENTAL_PREFIXES` (no schema change; `LOST_BY_DRIVER` is the text older files already hold).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Sequence

from armin.storage.models import LOST_BY_DRIVER, TrialState

MAX_ENVIRONMENTAL_LOSSES = 10  # environmental losses one slot may have before it is lost for good (see above)
ENVIRONMENT = "environment: "  # the prefix of every environmental reason the driver writes
NODE_LOST = ENVIRONMENT + "the trial's node or its raylet died"
MEMORY_PRESSURE = ENVIRONMENT + "Ray's memory monitor killed the worker (its node ran low on memory)"
ENVIRONMENTAL_PREFIXES = (ENVIRONMENT, LOST_BY_DRIVER)


class Failure(enum.Enum):
    """What a finished attempt that is not a result says about its slot (module docstring)."""

    DETERMINISTIC = "deterministic"
    ENVIRONMENTAL = "environmental"
    UNEXPLAINED = "unexplained"
    CANCELLED = "cancelled"


def failure_class(state: TrialState, reason: str | None) -> Failure | None:
    """The class of one attempt; None for a result or a running attempt."""
    if state == TrialState.FAILED:
        return Failure.DETERMINISTIC
    if state == TrialState.CANCELLED:
        return Failure.CANCELLED
    if state == TrialState.LOST:
        environmental = reason is not None and reason.startswith(ENVIRONMENTAL_PREFIXES)
        return Failure.ENVIRONMENTAL if environmental else Failure.UNEXPLAINED
    return None


def retry_due(history: Sequence[tuple[TrialState, str | None]], *, max_retries: int) -> bool:
    """Whether the slot's latest attempt is run again: the one retry rule (module docstring)."""
    if not history:
        return False
    latest = failure_class(*history[-1])
    if latest in (None, Failure.DETERMINISTIC):
        return False
    if latest == Failure.CANCELLED:
        return True
    spent = sum(failure_class(state, reason) == latest for state, reason in history)
    return spent <= (MAX_ENVIRONMENTAL_LOSSES if latest == Failure.ENVIRONMENTAL else max_retries)


def failed_for_good(history: Sequence[tuple[TrialState, str | None]], *, max_retries: int) -> bool:
    """A finished slot with no result that will not run again."""
    return bool(history) and failure_class(*history[-1]) is not None and not retry_due(history,
                                                                                       max_retries=max_retries)


History = list[tuple[TrialState, str | None]]


def histories(attempts: Iterable[tuple[Hashable, TrialState, str | None]]) -> dict[Hashable, History]:
    """(slot key, state, reason) of attempts in run order -> each slot's history, oldest first."""
    out: dict[Hashable, History] = {}
    for key, state, reason in attempts:
        out.setdefault(key, []).append((state, reason))
    return out


def count_failed_for_good(slots: dict[Hashable, History], *, max_retries: int) -> int:
    """How many of these slots ended without a result and will not run again."""
    return sum(failed_for_good(h, max_retries=max_retries) for h in slots.values())
