"""Tasks: a config per task (selected by its `name`), the `Task` it builds, and `build_task`."""

from __future__ import annotations

from typing import Union

from armin.tasks.algorithmic import (
    AssociativeRecallConfig,
    AssociativeRecallTask,
    CopyConfig,
    CopyTask,
    PrioritySortConfig,
    PrioritySortTask,
    RepeatCopyConfig,
    RepeatCopyTask,
)
from armin.tasks.base import Batch, Task
from armin.tasks.char_lm import CharLMConfig, CharLMTask
from armin.tasks.datafiles import DataError
from armin.tasks.digits import SeqDigitsConfig, SeqDigitsTask
from armin.tasks.mnist import MNISTTask, PermMNISTConfig, SeqMNISTConfig

TaskConfig = Union[CopyConfig, RepeatCopyConfig, AssociativeRecallConfig, PrioritySortConfig, SeqDigitsConfig,
                   SeqMNISTConfig, PermMNISTConfig, CharLMConfig]

_TASKS: dict[type, type[Task]] = {
    CopyConfig: CopyTask,
    RepeatCopyConfig: RepeatCopyTask,
    AssociativeRecallConfig: AssociativeRecallTask,
    PrioritySortConfig: PrioritySortTask,
    SeqDigitsConfig: SeqDigitsTask,
    SeqMNISTConfig: MNISTTask,
    PermMNISTConfig: MNISTTask,
    CharLMConfig: CharLMTask,
}

#: Every task's `name`, as written in a spec.
TASK_NAMES: tuple[str, ...] = tuple(cfg.name for cfg in _TASKS)


def build_task(cfg: TaskConfig) -> Task:
    """The task a config describes."""
    if type(cfg) not in _TASKS:
        raise TypeError(f"not a task config: {type(cfg).__name__} (expected one of {', '.join(TASK_NAMES)})")
    return _TASKS[type(cfg)](cfg)


__all__ = [
    "AssociativeRecallConfig",
    "AssociativeRecallTask",
    "Batch",
    "CharLMConfig",
    "CharLMTask",
    "CopyConfig",
    "CopyTask",
    "DataError",
    "MNISTTask",
    "PermMNISTConfig",
    "PrioritySortConfig",
    "PrioritySortTask",
    "RepeatCopyConfig",
    "RepeatCopyTask",
    "SeqDigitsConfig",
    "SeqDigitsTask",
    "SeqMNISTConfig",
    "TASK_NAMES",
    "Task",
    "TaskConfig",
    "build_task",
]
