"""Factorial effects on one scale, decided by the comparison rule over the family of effects.

Every effect is a contrast of per-seed cell scores, averaged over the other factors (Yates'
convention: the mean where the contrast is + minus the mean where it is -): a main effect is a
level's mean minus the reference level's (the first listed), an interaction is half the
difference of the simple effects, ((a_i b_j - a_0 b_j) - (a_i b_0 - a_0 b_0)) / 2. For 2 x 2
designs these are the textbook effects, all on the same scale. Only seeds with every cell are
used. Intervals and verdicts come from `armin.stats.rule.decide`, simultaneous over all the
effects of the table (m = their number), with "better" meaning the level (or the pair of
levels) improves the metric.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from armin.stats.compare import Direction, score
from armin.stats.rule import DEFAULT_ALPHA, DEFAULT_RARE_SHARE, Level, decide

EFFECT_COLUMNS = ("effect", "factor_a", "level_a", "factor_b", "level_b", "n_seeds", "estimate", "ci_low", "ci_high",
                  "confidence", "p_value", "verdict")


def effect_contrasts(cells: np.ndarray, order: dict[str, list]) -> list[tuple[str, str, object, str, object, np.ndarray]]:
    """Per-seed contrasts of every effect: (effect, factor_a, level_a, factor_b, level_b, values).

    `cells` is (seeds, L_1, ..., L_k, *batch): the score of each seed in each cell, factors in the
    order of `order` (factor -> its levels, the reference first); trailing batch axes (e.g.
    Monte-Carlo replications) are carried through, so `values` is (seeds, *batch).
    """
    factors = list(order)
    axes = range(len(factors))
    out = []
    for k, f in enumerate(factors):
        marginal = cells.mean(axis=tuple(a + 1 for a in axes if a != k))  # (seeds, L_k, *batch)
        for i, lv in enumerate(order[f][1:], start=1):
            out.append(("main", f, lv, "", "", marginal[:, i] - marginal[:, 0]))
    for (ka, fa), (kb, fb) in itertools.combinations(enumerate(factors), 2):
        others = tuple(a + 1 for a in axes if a not in (ka, kb))
        two = cells.mean(axis=others) if others else cells  # (seeds, L_a, L_b, *batch)
        for i, j in itertools.product(range(1, two.shape[1]), range(1, two.shape[2])):
            per_seed = ((two[:, i, j] - two[:, 0, j]) - (two[:, i, 0] - two[:, 0, 0])) / 2.0
            out.append(("interaction", fa, order[fa][i], fb, order[fb][j], per_seed))
    return out


def factorial_effects(df: pd.DataFrame, levels: dict[str, dict[str, object]], *, direction: Direction, rope: float,
                      alpha: float = DEFAULT_ALPHA, rare_share: float = DEFAULT_RARE_SHARE, looks: int = 1) -> pd.DataFrame:
    """Main effects and two-way interactions of the factorial arms in `levels` (arm -> {factor: level}).

    `df` is the table of `compare_arms` (worst-scored non-finite runs included); the factor
    levels keep the order of first appearance in `levels`, whose first is the reference. `looks`:
    the planned looks of a sequential design (the effects are read at one of them, the one where
    every cell has its seeds, so alpha is split over them as for the comparisons).
    """
    if not levels:
        return pd.DataFrame(columns=list(EFFECT_COLUMNS))
    factors = list(next(iter(levels.values())))
    order = {f: list(dict.fromkeys(lv[f] for lv in levels.values())) for f in factors}
    scored = score(df, direction)  # the worst of the whole table, as compare_arms scores it
    cells_index = list(itertools.product(*(order[f] for f in factors)))
    by_cell = {tuple(lv[f] for f in factors): arm for arm, lv in levels.items()}
    if any(c not in by_cell for c in cells_index) or any(a not in scored.wide.columns for a in by_cell.values()):
        return pd.DataFrame(columns=list(EFFECT_COLUMNS))  # not a full factorial: no effects
    wide = scored.wide[[by_cell[c] for c in cells_index]].dropna()  # seeds complete in every cell
    cells = wide.to_numpy(float).reshape(len(wide), *(len(order[f]) for f in factors))  # (seeds, L_1, ..., L_k)
    contrasts = effect_contrasts(cells, order)
    level = Level(alpha=alpha, m=len(contrasts), looks=looks)
    rows = []
    for effect, fa, la, fb, lb, per_seed in contrasts:
        dec = decide(scored.sign * per_seed, rope=rope, level=level, rare_share=rare_share)
        low, high = sorted((scored.sign * dec.ci_low, scored.sign * dec.ci_high))
        rows.append({"effect": effect, "factor_a": fa, "level_a": la, "factor_b": fb, "level_b": lb,
                     "n_seeds": len(per_seed), "estimate": float(per_seed.mean()) if len(per_seed) else np.nan,
                     "ci_low": low, "ci_high": high, "confidence": 1.0 - level.each, "p_value": dec.p_value,
                     "verdict": dec.verdict})
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
