"""How a cost profile is measured: its rounds and steps (no torch import, so the CLI can show the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

ROUNDS = 40  # timed rounds: enough pairs for 'same speed' (the seed guard needs 11-17 for 1-8 arms at alpha 0.05)
WARMUP_ROUNDS = 2  # untimed rounds first
STEPS_PER_ROUND = 15  # training steps (and inference batches) per arm per round; their median is the sample
STREAM = "cost_profile"  # the data and Gumbel streams of round r: derive_seed(run seed, STREAM, r, ...)


@dataclass(frozen=True)
class Settings:
    """A profile's design; the defaults are what the study driver uses."""

    rounds: int = ROUNDS
    warmup_rounds: int = WARMUP_ROUNDS
    steps_per_round: int = STEPS_PER_ROUND
    threads: int | None = None  # torch intra-op threads; None: leave the process's setting
