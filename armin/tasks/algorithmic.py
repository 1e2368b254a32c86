"""The four NTM-style bit tasks of the authors' code: copy, repeat copy, associative recall, priority sort.

Generators follow `shared/reference/armin.md` §8 (quirks kept and marked), presented as in §7.1:
the input rows, then an all-zero answer phase as long as the target, scored by BCE on sigmoid
outputs and by bits error per sequence. Lengths here are inclusive (the reference's
upper-exclusive `max_seq_len 50` is `max_len = 49`). Every sequence in a batch shares its
lengths, so a batch is one dense (T, B, X) tensor.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from armin.config import require
from armin.tasks.base import Batch, Task

BIT_PROBABILITY = 0.5  # P(bit = 1) for every data bit (§8)
PRIORITY_LOW, PRIORITY_HIGH = -1.0, 1.0  # priority-sort priorities ~ U[low, high) (§8)


# ---------------------------------------------------------------- configs


def _require_positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value >= 1, name, f"must be >= 1, got {value}")


def _require_range(cfg: object, lo: str, hi: str, minimum: int) -> None:
    """`minimum <= lo <= hi`, both inclusive, with the values in the message."""
    low, high = getattr(cfg, lo), getattr(cfg, hi)
    require(low >= minimum, lo, f"must be >= {minimum}, got {lo}={low}")
    require(low <= high, hi, f"`{lo} <= {hi}` must hold, got {lo}={low}, {hi}={high}")


@dataclass(frozen=True)
class CopyConfig:
    """Copy: reproduce a random bit sequence after seeing it once (§8 Copy)."""

    name: Literal["copy"] = "copy"
    width: int = 8  # data bits per row
    min_len: int = 1  # shortest sequence, inclusive
    max_len: int = 49  # longest sequence, inclusive (the reference's exclusive 50)

    def __post_init__(self) -> None:
        _require_positive(self, "width")
        _require_range(self, "min_len", "max_len", minimum=1)


@dataclass(frozen=True)
class RepeatCopyConfig:
    """Repeat copy: reproduce the sequence `rep` times, then raise an end flag (§8 Repeat copy)."""

    name: Literal["repeat_copy"] = "repeat_copy"
    width: int = 8  # data bits per row
    min_len: int = 1  # shortest sequence, inclusive
    max_len: int = 9  # longest sequence, inclusive
    min_repeat: int = 1  # fewest repeats, inclusive
    max_repeat: int = 9  # most repeats, inclusive

    def __post_init__(self) -> None:
        _require_positive(self, "width")
        _require_range(self, "min_len", "max_len", minimum=1)
        _require_range(self, "min_repeat", "max_repeat", minimum=1)


@dataclass(frozen=True)
class AssociativeRecallConfig:
    """Associative recall: given one item of a list, answer the item after it (§8 Associative recall)."""

    name: Literal["associative_recall"] = "associative_recall"
    width: int = 6  # data bits per row
    item_len: int = 3  # rows per item
    min_items: int = 2  # fewest items, inclusive (>= 2: the last item is never queried)
    max_items: int = 5  # most items, inclusive (the reference's exclusive 6)

    def __post_init__(self) -> None:
        _require_positive(self, "width", "item_len")
        _require_range(self, "min_items", "max_items", minimum=2)


@dataclass(frozen=True)
class PrioritySortConfig:
    """Priority sort: output the highest-priority rows first (§8 Priority sort)."""

    name: Literal["priority_sort"] = "priority_sort"
    width: int = 8  # data bits per row; the priority is one extra input channel
    n_inputs: int = 40  # rows shown
    n_outputs: int = 30  # highest-priority rows to reproduce
    legacy_column_sort: bool = False  # False: rows ordered by priority; True: the authors' bug, every column sorted on its own

    def __post_init__(self) -> None:
        _require_positive(self, "width", "n_outputs")
        require(self.n_outputs <= self.n_inputs, "n_outputs",
                f"`n_outputs <= n_inputs` must hold, got n_outputs={self.n_outputs}, n_inputs={self.n_inputs}")


# ---------------------------------------------------------------- shared helpers


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """One integer from U{low..high}, both inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _bits(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.bernoulli(torch.full(shape, BIT_PROBABILITY), generator=generator)


def _framed(data: torch.Tensor, end_value: float) -> torch.Tensor:
    """Copy-style input: a start row (channel W), the data rows, an end row (channel W+1 = end_value)."""
    length, batch, width = data.shape  # (L, B, W)
    inputs = torch.zeros(length + 2, batch, width + 2)  # (L+2, B, W+2)
    inputs[0, :, width] = 1.0
    inputs[1:length + 1, :, :width] = data
    inputs[length + 1, :, width + 1] = end_value
    return inputs


class _BitsTask(Task):
    """Bit-target tasks: zero answer phase, BCE over the answer-phase logits, bits error per sequence."""

    metric = "bits_error"
    higher_is_better = False

    @abstractmethod
    def _generate(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's own rows (T_in, B, X) and target (T_out, B, Y), before the answer phase."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        inputs, targets = self._generate(batch_size, generator)  # (T_in, B, X), (T_out, B, Y)
        answer_phase = inputs.new_zeros(targets.shape[0], batch_size, inputs.shape[2])  # (T_out, B, X)
        return Batch(torch.cat([inputs, answer_phase]), targets)  # inputs (T_in+T_out, B, X)

    def eval_set(self, n_sequences: int, batch_size: int, generator: torch.Generator) -> list[Batch]:
        return [self.sample(batch_size, generator) for _ in range(math.ceil(n_sequences / batch_size))]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        answer = logits[-batch.targets.shape[0]:]  # (T_out, B, Y)
        return F.binary_cross_entropy_with_logits(answer, batch.targets)

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        answer = logits[-batch.targets.shape[0]:]  # (T_out, B, Y)
        wrong = ((answer > 0).to(batch.targets.dtype) != batch.targets).sum(dim=(0, 2))  # (B,)
        return {"loss": float(self.loss(logits, batch)), "bits_error": float(wrong.float().mean())}


# ---------------------------------------------------------------- tasks


class CopyTask(_BitsTask):
    """Input (L+2, B, W+2) framed by start/end rows; target (L, B, W) = the data."""

    def __init__(self, cfg: CopyConfig) -> None:
        self.cfg = cfg
        self.input_size, self.output_size = cfg.width + 2, cfg.width

    def _generate(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        length = _randint(self.cfg.min_len, self.cfg.max_len, generator)
        data = _bits((length, batch_size, self.cfg.width), generator)  # (L, B, W)
        return _framed(data, 1.0), data


class RepeatCopyTask(_BitsTask):
    """Input (L+2, B, W+2) whose end row carries the normalised repeat count; target (L*rep+1, B, W+1)."""

    def __init__(self, cfg: RepeatCopyConfig) -> None:
        self.cfg = cfg
        self.input_size, self.output_size = cfg.width + 2, cfg.width + 1

    def normalised_repeat(self, rep: int) -> float:
        """The reference's quirky standardisation (§8): with its exclusive upper bound hi = max+1,
        mean = (hi - lo)/2 and var = ((hi - lo + 1)^2 - 1)/12, so (rep - 4.5)/sqrt(8.25) by default
        although the true mean of 1..9 is 5."""
        low, high_ex = self.cfg.min_repeat, self.cfg.max_repeat + 1
        mean = (high_ex - low) / 2
        var = ((high_ex - low + 1) ** 2 - 1) / 12
        return (rep - mean) / math.sqrt(var)

    def _generate(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        length = _randint(cfg.min_len, cfg.max_len, generator)
        rep = _randint(cfg.min_repeat, cfg.max_repeat, generator)
        data = _bits((length, batch_size, cfg.width), generator)  # (L, B, W)
        targets = torch.zeros(length * rep + 1, batch_size, cfg.width + 1)  # (L*rep+1, B, W+1)
        targets[:-1, :, :cfg.width] = data.repeat(rep, 1, 1)
        targets[-1, :, cfg.width] = 1.0
        return _framed(data, self.normalised_repeat(rep)), targets


class AssociativeRecallTask(_BitsTask):
    """Items, each a delimiter row (channel W) then `item_len` rows; then a query item between two
    delimiter rows (channel W+1). The target is the item after the queried one."""

    def __init__(self, cfg: AssociativeRecallConfig) -> None:
        self.cfg = cfg
        self.input_size, self.output_size = cfg.width + 2, cfg.width

    def _generate(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, width, item_len = self.cfg, self.cfg.width, self.cfg.item_len
        n_items = _randint(cfg.min_items, cfg.max_items, generator)
        items = _bits((n_items, item_len, batch_size, width), generator)  # (n, I, B, W)
        # Reference quirk (§8): q ~ U{0..n-2}, so the last item is never queried.
        query = torch.randint(0, n_items - 1, (batch_size,), generator=generator)  # (B,)

        listed = torch.zeros(n_items, item_len + 1, batch_size, width + 2)  # (n, I+1, B, W+2)
        listed[:, 0, :, width] = 1.0
        listed[:, 1:, :, :width] = items
        by_sequence = items.permute(2, 0, 1, 3)  # (B, n, I, W)
        rows = torch.arange(batch_size)
        asked = torch.zeros(item_len + 2, batch_size, width + 2)  # (I+2, B, W+2)
        asked[[0, -1], :, width + 1] = 1.0
        asked[1:-1, :, :width] = by_sequence[rows, query].transpose(0, 1)  # (I, B, W)
        inputs = torch.cat([listed.reshape(-1, batch_size, width + 2), asked])  # ((I+1)(n+1)+1, B, W+2)
        return inputs, by_sequence[rows, query + 1].transpose(0, 1)  # target (I, B, W)


class PrioritySortTask(_BitsTask):
    """Input (n_in, B, W+1): bits plus a priority; target (n_out, B, W): the top rows by priority."""

    def __init__(self, cfg: PrioritySortConfig) -> None:
        self.cfg = cfg
        self.input_size, self.output_size = cfg.width + 1, cfg.width

    def _generate(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        bits = _bits((cfg.n_inputs, batch_size, cfg.width), generator)  # (n_in, B, W)
        priority = torch.rand(cfg.n_inputs, batch_size, 1, generator=generator)  # (n_in, B, 1)
        priority = PRIORITY_LOW + (PRIORITY_HIGH - PRIORITY_LOW) * priority
        inputs = torch.cat([bits, priority], dim=2)  # (n_in, B, W+1)
        if cfg.legacy_column_sort:
            # The authors' bug (§8): torch.sort(input, dim=0) sorts every channel on its own, so each
            # bit column becomes "all its ones first" and the task reduces to counting ones.
            return inputs, torch.sort(inputs, dim=0, descending=True).values[:cfg.n_outputs, :, :cfg.width]
        order = torch.argsort(priority, dim=0, descending=True)[:cfg.n_outputs]  # (n_out, B, 1)
        return inputs, torch.gather(bits, 0, order.expand(-1, -1, cfg.width))  # (n_out, B, W)
