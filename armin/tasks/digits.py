"""Sequential (optionally permuted) digits: a small, offline stand-in for pixel-by-pixel MNIST (§7.2, §9).

scikit-learn ships the 1,797 8x8 UCI digits, so there is nothing to download: each image is read
one pixel per step (64 steps, values in [0, 1]) and classified from the last step's logits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from armin.config import require
from armin.tasks.base import Batch, Task

PIXEL_MAX = 16.0  # sklearn's digits are integers 0..16
N_PIXELS = 64  # 8x8, one pixel per step
N_CLASSES = 10


@dataclass(frozen=True)
class SeqDigitsConfig:
    """Pixel-by-pixel digit classification with a fixed train/eval split."""

    name: Literal["seq_digits"] = "seq_digits"
    permute: bool = False  # False: raster order; True: one fixed pixel permutation, as in pMNIST
    permutation_seed: int = 0  # seeds that permutation (the same for every run)
    eval_fraction: float = 0.2  # share of the images held out for evaluation
    split_seed: int = 0  # seeds the train/eval split (the same for every run)

    def __post_init__(self) -> None:
        require(0.0 < self.eval_fraction < 1.0, "eval_fraction", f"must be in (0, 1), got {self.eval_fraction}")


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All images (N, 64) float32 in [0, 1] and labels (N,) int64; loaded once per process.

    Callers must not modify the returned tensors (they are shared through the cache).
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # slow import, only when used

    data = sklearn_load_digits()
    images = torch.tensor(data.data, dtype=torch.float32) / PIXEL_MAX  # (N, 64)
    return images, torch.tensor(data.target, dtype=torch.int64)  # (N,)


def fixed_permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def fixed_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out rows, training rows): a `fraction` of n rows (at least 1, at most n - 1), fixed by `seed`."""
    n_out = min(max(round(fraction * n), 1), n - 1)
    order = fixed_permutation(n, seed)
    return order[:n_out], order[n_out:]


class PixelClassificationTask(Task):
    """Images read one pixel per step, classified from the last step's logits (T, B, 10).

    Subclasses set `train_images/labels` and `eval_images/labels` ((N, T) rows, (N,) classes) and may
    override `_batch` (e.g. to reorder or scale pixels lazily).
    """

    input_size = 1
    output_size = N_CLASSES
    metric = "accuracy"
    higher_is_better = True

    def _batch(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        return Batch(images.T.unsqueeze(-1).contiguous(), labels)  # (T, B, 1), (B,)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, len(self.train_labels), (batch_size,), generator=generator)  # (B,)
        return self._batch(self.train_images[idx], self.train_labels[idx])

    def eval_set(self, n_sequences: int, batch_size: int, generator: torch.Generator) -> list[Batch]:
        """The whole evaluation split in fixed order; `n_sequences` and `generator` are unused."""
        return [self._batch(self.eval_images[i:i + batch_size], self.eval_labels[i:i + batch_size])
                for i in range(0, len(self.eval_labels), batch_size)]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits[-1], batch.targets)  # logits[-1]: (B, 10), the last step only

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        correct = logits[-1].argmax(dim=-1) == batch.targets  # (B,)
        return {"loss": float(self.loss(logits, batch)), "accuracy": float(correct.float().mean())}


class SeqDigitsTask(PixelClassificationTask):
    """Inputs (64, B, 1); targets (B,) class indices scored on the last step's logits (64, B, 10)."""

    data_source = "scikit-learn digits"

    def __init__(self, cfg: SeqDigitsConfig) -> None:
        self.cfg = cfg
        images, labels = load_digits()
        if cfg.permute:
            images = images[:, fixed_permutation(N_PIXELS, cfg.permutation_seed)]  # (N, 64)
        self.eval_index, self.train_index = fixed_split(len(labels), cfg.eval_fraction, cfg.split_seed)
        self.train_images, self.train_labels = images[self.train_index], labels[self.train_index]
        self.eval_images, self.eval_labels = images[self.eval_index], labels[self.eval_index]
