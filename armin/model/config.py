"""The model's ablation switches: one frozen dataclass, one two-sided comment per field.

Section numbers (§) refer to `shared/reference/armin.md`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from armin.config import require


@dataclass(frozen=True)
class TemperatureSchedule:
    """Gumbel-softmax temperature over training steps.

    Every number here is a **temperature** tau: reads use softmax((logits + g) / tau), so larger
    is softer. The authors' code multiplies by an *inverse* temperature and raises it (§4.3);
    `kind = "reference"` reproduces that schedule: inverse temperature 1 at iteration 0, raised by 1
    after the optimizer step of iterations 0, 400, 800, ... and capped at 50, i.e.
    min(1 + ceil(step / 400), 50): tau = 1 at step 0, 1/2 at steps 1-400, 1/3 at 401-800, ...,
    1/50 from step 19,201 (§7.1).
    """

    kind: Literal["constant", "linear", "exponential", "reference"] = "constant"
    start: float = 1.0  # temperature at step 0 (the only one used by constant)
    end: float = 1.0  # temperature reached after `steps` steps (linear, exponential)
    steps: int = 0  # anneal length in training steps; held at `end` afterwards

    def __post_init__(self) -> None:
        require(self.start > 0 and self.end > 0, "start", f"temperatures must be > 0, got start={self.start}, end={self.end}")
        require(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        require(self.kind in ("constant", "reference") or self.steps > 0, "steps",
                f"a {self.kind} anneal needs steps > 0")

    def __call__(self, step: int) -> float:
        """The temperature tau at training step `step` (0-based)."""
        if self.kind == "reference":
            return 1.0 / min(1 + -(-step // 400), 50)  # 1 + ceil(step / 400), in integers
        if self.kind == "constant":
            return self.start
        frac = min(step / self.steps, 1.0)
        if self.kind == "linear":
            return self.start + frac * (self.end - self.start)
        return self.start * math.exp(frac * math.log(self.end / self.start))


#: What a model with a memory records besides the task's metrics (armin.training.probes); either direction.
MEMORY_PROBES: tuple[str, ...] = ("read_entropy", "slot_usage")


@dataclass(frozen=True)
class ModelConfig:
    """Which recurrent model to build. `arch = "lstm"` ignores every memory field."""

    arch: Literal["armin", "lstm"] = "armin"  # armin: memory network (cell below); lstm: plain memory-less LSTM baseline
    formulation: Literal["reference", "paper"] = "reference"  # reference: authors' algorithmic code (§4.2); paper: patent eqs. (1)-(6) (§3.2)
    addressing: Literal["hidden", "hidden_only", "input_only", "tardis"] = "hidden"  # read logits from [x, h]: ARMIN; h alone; x alone; TARDIS keys+usage (§5, AwTA)
    cell: Literal["armin", "lstm", "tardis"] = "armin"  # armin: integrating cell with g^h, g^r and two output gates; lstm: LSTM fed [x, r]; tardis: the authors' TARDIS cell (LSTM with Gumbel-sigmoid scalars on h and r in the candidate, learned initial h and c) (§5)
    address_state: Literal["c", "h"] = "c"  # tardis addressing with a cell that has a c (lstm, tardis): c: score from the cell state c, as the authors' TARDIS; h: from h
    read: Literal["gumbel", "soft"] = "gumbel"  # gumbel: straight-through hard one-hot (paper); soft: softmax-weighted sum (released alg. code)
    eval_noise: bool = False  # False: eval reads take the argmax of the logits; True: Gumbel noise at eval too, as the code does
    hidden_size: int = 100  # H
    n_slots: int = 50  # N memory slots
    r_size: int = 32  # slot width R in the reference formulation; the paper's slot width is H
    key_size: int = 5  # per-slot key width for tardis addressing
    temperature: TemperatureSchedule = field(default_factory=TemperatureSchedule)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "n_slots", "r_size", "key_size"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.addressing != "tardis" or self.hidden_size >= 4, "hidden_size",
                "tardis addressing needs hidden_size >= 4 (its scorer has hidden_size // 4 units)")
        require(self.address_state == "c" or (self.addressing == "tardis" and self.has_c), "address_state",
                "'h' applies only to tardis addressing with a cell that has a c (lstm, tardis); leave it 'c'")

    @property
    def has_memory(self) -> bool:
        """Whether the model reads a memory (and so records `MEMORY_PROBES`); the lstm baseline does not."""
        return self.arch != "lstm"

    @property
    def probe_metrics(self) -> tuple[str, ...]:
        """The memory probes this model records at each evaluation."""
        return MEMORY_PROBES if self.has_memory else ()

    @property
    def has_c(self) -> bool:
        """Whether the cell carries an LSTM cell state c besides h (lstm and tardis cells)."""
        return self.cell in ("lstm", "tardis")

    @property
    def address_reads_c(self) -> bool:
        """TARDIS scores slots from the cell state c (authors' `torch.cat([x, c])`), unless told h."""
        return self.addressing == "tardis" and self.has_c and self.address_state == "c"

    @property
    def gate_noise_width(self) -> int:
        """Gumbel samples per step beyond the N read ones: the tardis cell's two gates alpha, beta."""
        return 2 if self.cell == "tardis" else 0

    @property
    def slot_size(self) -> int:
        """Width of one memory slot: r_size (reference) or the hidden size (paper: h_t is written)."""
        return self.r_size if self.formulation == "reference" else self.hidden_size

    @property
    def forget_bias(self) -> float:
        """+1 inside the forget sigmoid in the authors' code (§4.6 #8); the patent's eqs. have none."""
        return 1.0 if self.formulation == "reference" else 0.0

    @property
    def output_size(self) -> int:
        """Width of o_t fed to the output layer: [state part, read part] or the LSTM's h."""
        return self.hidden_size if self.arch == "lstm" else self.hidden_size + self.slot_size

    def describe(self) -> str:
        """A short human label such as `armin/reference/hidden/armin/gumbel`."""
        if self.arch == "lstm":
            return f"lstm(H={self.hidden_size})"
        addr = self.addressing + ("(h)" if self.addressing == "tardis" and self.has_c and not self.address_reads_c else "")
        return (f"armin/{self.formulation}/{addr}/{self.cell}/{self.read}"
                f"(H={self.hidden_size},N={self.n_slots},W={self.slot_size})")
