"""Training: the shared optimizer/budget config and the one trainer for every model and task."""

from armin.training.config import OptimizerConfig, RunConfig, TrainConfig
from armin.training.trainer import RunResult, evaluate, train, training_events

__all__ = ["OptimizerConfig", "RunConfig", "RunResult", "TrainConfig", "evaluate", "train", "training_events"]
