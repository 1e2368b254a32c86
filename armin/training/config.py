"""What a run is: task, model, and the optimizer and budget that every variant shares.

The optimizer, clipping, batch size, step budget and evaluation set live here and never in
`ModelConfig`, so an ablation can only change the model, never how it is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from armin.config import require
from armin.model.config import ModelConfig
from armin.tasks import CopyConfig, TaskField

DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]+)?")  # what `device` may name; torch.device accepts more


@dataclass(frozen=True)
class OptimizerConfig:
    """Defaults are the authors' algorithmic-task settings (§7.1)."""

    name: Literal["rmsprop", "adam"] = "rmsprop"
    lr: float = 1e-4
    momentum: float = 0.9  # rmsprop only
    alpha: float = 0.95  # rmsprop smoothing constant
    beta1: float = 0.9  # adam only
    beta2: float = 0.999  # adam only
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip: Literal["value", "norm", "none"] = "value"  # value: clip_grad_value_ (the code); norm: clip_grad_norm_
    clip_threshold: float = 10.0

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        require(0 < self.alpha < 1, "alpha", f"must be in (0, 1), got {self.alpha}")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1", f"betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.clip_threshold > 0, "clip_threshold", f"must be > 0, got {self.clip_threshold}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps (one batch each)
    batch_size: int = 32
    eval_every: int = 100  # steps between evaluations; the last step is always evaluated
    eval_sequences: int = 256  # size of the fixed evaluation set (algorithmic tasks)
    eval_batch_size: int = 128
    eval_seed: int = 0  # the evaluation set comes from this seed: identical for every run and seed
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_sequences", "eval_batch_size"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.eval_seed >= 0, "eval_seed", f"must be >= 0, got {self.eval_seed}")
        require(DEVICE_PATTERN.fullmatch(self.device) is not None, "device",
                f"must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got {self.device!r}")


@dataclass(frozen=True)
class RunConfig:
    """One training run, reproducible from this and nothing else."""

    task: TaskField = field(default_factory=CopyConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # derives the data, init and Gumbel streams (armin.seeding)

    def __post_init__(self) -> None:
        require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
