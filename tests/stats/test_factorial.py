"""Factorial effects on the Yates scale (`factorial_effects`, `effect_contrasts`)."""

import math

import numpy as np
import pandas as pd
import pytest

from armin.stats import factorial_effects
from armin.stats.factorial import effect_contrasts

# A 2 x 2 design (addressing x cell), cell means chosen so every effect is an exact binary fraction:
#                  cell=armin   cell=lstm
# addr=hidden         1.0          1.5       reference row
# addr=tardis         3.0          5.5
# main addr = (3 + 5.5)/2 - (1 + 1.5)/2 = 3.0; main cell = (1.5 + 5.5)/2 - (1 + 3)/2 = 1.5;
# interaction = ((5.5 - 1.5) - (3 - 1)) / 2 = 1.0 (half the difference of the simple effects of addr).
LEVELS = {"h-a": {"addr": "hidden", "cell": "armin"}, "h-l": {"addr": "hidden", "cell": "lstm"},
          "t-a": {"addr": "tardis", "cell": "armin"}, "t-l": {"addr": "tardis", "cell": "lstm"}}
MEANS = {"h-a": 1.0, "h-l": 1.5, "t-a": 3.0, "t-l": 5.5}


def noise_free(n_seeds: int) -> pd.DataFrame:
    """Every seed shifts all four cells by the same amount (a seed effect), which every contrast cancels."""
    rows = [{"arm": arm, "seed": s, "value": mean + 0.25 * s, "state": "complete"}
            for arm, mean in MEANS.items() for s in range(n_seeds)]
    return pd.DataFrame(rows)


def test_effects_of_a_noise_free_2x2_are_exact_on_the_yates_scale():
    out = factorial_effects(noise_free(12), LEVELS, direction="maximize", rope=0.1).set_index("effect")
    main = out.loc["main"].set_index("factor_a")
    assert main.loc["addr", "estimate"] == 3.0 and main.loc["addr", "level_a"] == "tardis"
    assert main.loc["cell", "estimate"] == 1.5 and main.loc["cell", "level_a"] == "lstm"
    inter = out.loc["interaction"]
    assert (inter.factor_a, inter.level_a, inter.factor_b, inter.level_b, inter.estimate) == \
        ("addr", "tardis", "cell", "lstm", 1.0)
    # constant contrasts: the point interval once 2 / 2^n < alpha / 3, and "better" (maximize)
    assert (out["ci_low"] == out["estimate"]).all() and (out["ci_high"] == out["estimate"]).all()
    assert (out["verdict"] == "better").all() and (out["confidence"] == 1 - 0.05 / 3).all()


def test_minimizing_flips_the_verdicts_not_the_estimates():
    out = factorial_effects(noise_free(12), LEVELS, direction="minimize", rope=0.1)
    assert out["estimate"].tolist() == [3.0, 1.5, 1.0] and (out["verdict"] == "worse").all()


def test_three_noise_free_seeds_give_unbounded_intervals():
    out = factorial_effects(noise_free(3), LEVELS, direction="maximize", rope=0.1)
    assert out["estimate"].tolist() == [3.0, 1.5, 1.0]
    assert (out["ci_low"] == -math.inf).all() and (out["ci_high"] == math.inf).all()
    assert (out["verdict"] == "inconclusive").all()


def test_a_main_effect_is_each_level_mean_minus_the_reference_mean():
    levels = {f"{a}{b}": {"a": a, "b": b} for a in ("x", "y", "z") for b in ("0", "1")}
    means = {"x0": 0.0, "x1": 1.0, "y0": 2.0, "y1": 4.0, "z0": -1.0, "z1": 0.0}
    df = pd.DataFrame([{"arm": arm, "seed": s, "value": v, "state": "complete"} for arm, v in means.items()
                       for s in range(4)])
    out = factorial_effects(df, levels, direction="maximize", rope=0.1)
    main = out[out.effect == "main"].set_index(["factor_a", "level_a"])["estimate"]
    assert main.loc[("a", "y")] == 3.0 - 0.5 and main.loc[("a", "z")] == -0.5 - 0.5
    assert main.loc[("b", "1")] == pytest.approx(5.0 / 3 - 1.0 / 3)
    inter = out[out.effect == "interaction"].set_index("level_a")["estimate"]
    assert inter.loc["y"] == ((4 - 1) - (2 - 0)) / 2 and inter.loc["z"] == ((0 - 1) - (-1 - 0)) / 2


def test_not_a_full_factorial_gives_no_effects():
    df = noise_free(5)
    assert factorial_effects(df[df.arm != "t-l"], LEVELS, direction="maximize", rope=0.1).empty


def test_effect_contrasts_carry_trailing_batch_axes():
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(7, 2, 3, 5))  # (seeds, L_a, L_b, reps)
    order = {"a": [0, 1], "b": [0, 1, 2]}
    batched = effect_contrasts(cells, order)
    for r in range(5):
        one = effect_contrasts(cells[..., r], order)
        assert [c[:5] for c in one] == [c[:5] for c in batched]
        for c1, cb in zip(one, batched, strict=True):
            assert np.array_equal(c1[-1], cb[-1][:, r])
