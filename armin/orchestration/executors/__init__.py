"""Executors: what runs the driver's trials (`base.Executor`). `RayExecutor` is the platform's (a Ray
cluster, local or joined); `InlineExecutor` runs them on threads of the driver's own process, for
fast tests of the driver's rules and for the Python API.

The two implementations are imported on first use: the worker imports `base` (through the failure
reasons), and both implementations import the worker.
"""

from armin.orchestration.executors.base import Capacity, Event, Executor, ExecutorError, FailureKind, Unfinished

__all__ = ["Capacity", "Event", "Executor", "ExecutorError", "FailureKind", "InlineExecutor", "RayExecutor",
           "Unfinished", "WorkerKilled"]
_LAZY = {"InlineExecutor": "inline", "WorkerKilled": "inline", "RayExecutor": "ray_executor"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"armin.orchestration.executors.{_LAZY[name]}"), name)
    raise AttributeError(name)
