"""How a cost profile is measured: its rounds and steps (no torch import, so the CLI can show the defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from armin.errors import ConfigError

ROUNDS = 40  # timed rounds: enough pairs for 'same speed' (the seed guard needs 11-17 for 1-8 arms at alpha 0.05)
WARMUP_ROUNDS = 2  # untimed rounds first
STEPS_PER_ROUND = 15  # training steps (and inference batches) per arm per round; their median is the sample


@dataclass(frozen=True)
class Settings:
    """A profile's design; the defaults are what the study driver uses."""

    rounds: int = ROUNDS
    warmup_rounds: int = WARMUP_ROUNDS
    steps_per_round: int = STEPS_PER_ROUND
    threads: int | None = None  # torch intra-op threads; None: leave the process's setting


ROUNDS_ENV = "ARMIN_PROFILE_ROUNDS"  # the study driver's profile rounds; "0": no profile (e.g. a quick test)


def driver_rounds() -> int:
    """The profile rounds the study driver uses: $ARMIN_PROFILE_ROUNDS, else ROUNDS (one line if malformed)."""
    value = os.environ.get(ROUNDS_ENV, "").strip()
    if not value:
        return ROUNDS
    if not value.isdigit():
        raise ConfigError(f"${ROUNDS_ENV}: expected a whole number of rounds (0: no cost profile), got {value!r}")
    return int(value)
