"""Tasks: a config per task (selected by its `name`), the `Task` it builds, and `build_task`.

The registry (`register`) is the one place a task is known: specs and run configs parse `[task]`
from it (`TaskField`), and the metrics a spec may optimise come from the task classes themselves
(`Task.metric`, `Task.higher_is_better`, `Task.recorded_metrics`), so a new task is one config
class, one `Task` subclass and one `register` call.
"""

from __future__ import annotations

from typing import Annotated, Union

from armin.config import Tagged

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

#: The shipped tasks' `name`s, as written in a spec (`task_configs()` includes registered ones).
TASK_NAMES: tuple[str, ...] = tuple(cfg.name for cfg in _TASKS)


def register(config: type, task: type[Task]) -> None:
    """Make `config` (a frozen dataclass with a `name: Literal["..."]` field) a task that builds `task`."""
    _TASKS[config] = task


def unregister(config: type) -> None:
    """Forget a task `register` added (tests that define a task of their own)."""
    _TASKS.pop(config, None)


def task_configs() -> tuple[type, ...]:
    """Every registered task config class, in registration order."""
    return tuple(_TASKS)


def task_class(config: type | object) -> type[Task]:
    """The `Task` subclass a config (class or instance) builds."""
    cls = config if isinstance(config, type) else type(config)
    if cls not in _TASKS:
        names = ", ".join(c.name for c in _TASKS)
        raise TypeError(f"not a task config: {cls.__name__} (expected one of {names})")
    return _TASKS[cls]


def build_task(cfg: TaskConfig) -> Task:
    """The task a config describes."""
    return task_class(cfg)(cfg)


#: The type of a `task` field: any registered task config, chosen by its `name` (`armin.config.Tagged`).
TaskField = Annotated[TaskConfig, Tagged(task_configs)]


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
    "TaskField",
    "build_task",
    "register",
    "task_class",
    "task_configs",
    "unregister",
]
