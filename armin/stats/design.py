"""Fixed and sequential seed designs: how many looks a family of comparisons gets, and where."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SequentialDesign:
    """Seeds on demand: a first round, then `step` more seeds per round, at most `max_seeds` per arm.

    Each round ends with a look at every unsettled comparison; `schedule` lists the number of
    pairs at each look and `looks` their count K, which the verdict rule spends alpha over
    (Bonferroni), so stopping a comparison as soon as it settles keeps the family-wise error.
    """

    first_round: int = 10
    step: int = 5
    max_seeds: int = 30

    def __post_init__(self) -> None:
        for name in ("first_round", "step", "max_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"`{name}` must be an integer, but got ({name}={value!r}).")
        if not 2 <= self.first_round <= self.max_seeds or self.step < 1:
            raise ValueError(f"`2 <= first_round <= max_seeds` and `step >= 1` must hold, but got "
                             f"({self.first_round=}, {self.step=}, {self.max_seeds=}).")

    @property
    def schedule(self) -> tuple[int, ...]:
        """Pairs at each look: first_round, first_round + step, ..., capped at max_seeds (always the last)."""
        points = list(range(self.first_round, self.max_seeds, self.step))
        return tuple(points + [self.max_seeds])

    @property
    def looks(self) -> int:
        return len(self.schedule)

    def next_after(self, n: int) -> int | None:
        """The pair count of the first look beyond n, or None when n reached max_seeds."""
        later = [p for p in self.schedule if p > n]
        return later[0] if later else None
