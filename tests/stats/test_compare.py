"""The table API (`compare_arms`, `plan_seeds`, `comparison_trace`, `score`): validation, worst-scoring, designs."""

import math

import numpy as np
import pandas as pd
import pytest

from armin.stats import compare_arms, comparison_trace, plan_seeds, score
from armin.stats.compare import score_runs
from armin.stats.rule import Level, decide_batch


def table(values: dict[str, list[float]], states: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per (arm, seed) from per-arm value lists (seed = position); states default to complete."""
    rows = [{"arm": arm, "seed": seed, "value": v, "state": (states or {}).get(arm, ["complete"] * len(vs))[seed]}
            for arm, vs in values.items() for seed, v in enumerate(vs)]
    return pd.DataFrame(rows, columns=["arm", "seed", "value", "state"])


GOOD = table({"A": [1.0, 2.0, 3.0], "B": [1.5, 2.5, 3.5]})
API = [lambda df, **kw: compare_arms(df, **kw), lambda df, **kw: plan_seeds(df, **kw),
       lambda df, **kw: comparison_trace(df, **kw)]


# -- input validation: one message that names what is wrong and shows the values ---------------------------------------

@pytest.mark.parametrize("call", API)
@pytest.mark.parametrize("df,kwargs,message", [
    (GOOD.drop(columns="state"), {}, r"needs the columns \['arm', 'seed', 'value', 'state'\], but \['state'\] are missing"),
    (GOOD.assign(state=["complete"] * 5 + ["crashed"]), {},
     r"`state` must be one of \['complete', 'diverged', 'failed'\], but got \['crashed'\]"),
    (pd.concat([GOOD, GOOD.iloc[[4]]]), {}, r"one row per \(arm, seed\) is required, but got duplicates: \[\('B', 1\)\]"),
    (GOOD, {"baseline": "Z"}, r"the baseline 'Z' has no rows \(arms: \['A', 'B'\]\)"),
    (GOOD, {"rope": -0.5}, r"`rope >= 0` must hold and be finite, but got \(rope=-0.5\)"),
    (GOOD, {"rope": math.inf}, r"`rope >= 0` must hold and be finite, but got \(rope=inf\)"),
    (GOOD, {"alpha": 1.0}, r"`0 < alpha < 1` must hold, but got \(alpha=1.0\)"),
    (GOOD, {"alpha": 0.0}, r"`0 < alpha < 1` must hold, but got \(alpha=0.0\)"),
    (GOOD, {"direction": "up"}, r"`direction` must be 'minimize' or 'maximize', but got \(direction='up'\)"),
])
def test_bad_input_is_rejected_with_its_values(call, df, kwargs, message):
    with pytest.raises(ValueError, match=message):
        call(df, **({"baseline": "A", "direction": "minimize", "rope": 0.5} | kwargs))


# -- worst-scoring: a run without a finite value is the worst finite value of the table ---------------------------------

FAILURES = table({"A": [1.0, 2.0, 9.0, 3.0, 4.0, math.nan], "B": [math.nan, 5.0, 0.5, math.nan, math.inf, 7.0]},
                 {"A": ["complete"] * 5 + ["diverged"],
                  "B": ["diverged", "failed", "complete", "complete", "complete", "diverged"]})


@pytest.mark.parametrize("direction,worst", [("minimize", 9.0), ("maximize", 0.5)])
def test_runs_without_a_finite_value_score_as_the_worst_finite_value(direction, worst):
    s = score(FAILURES, direction)
    assert s.worst == worst
    assert s.wide["B"].tolist() == [worst, worst, 0.5, worst, worst, worst]  # a failed run's value does not count
    assert s.wide["A"].tolist() == [1.0, 2.0, 9.0, 3.0, 4.0, worst]
    assert s.kind["B"].tolist() == ["diverged", "failed", "complete", "nan", "nan", "diverged"]


def test_a_table_without_any_finite_value_scores_zero():
    s = score(table({"A": [math.nan, math.nan], "B": [math.nan, 1.0]}, {"B": ["diverged", "failed"]}), "minimize")
    assert s.worst == 0.0 and (s.wide.to_numpy() == 0.0).all()


def test_comparison_counts_the_worst_scored_runs_among_its_pairs():
    row = compare_arms(FAILURES, baseline="A", direction="minimize", rope=0.5).iloc[0]
    assert (row.n_pairs, row.n_diverged, row.n_failed, row.n_nan) == (6, 3, 1, 2)  # both arms' runs
    seeds_0_to_2 = compare_arms(FAILURES[FAILURES.seed < 3], baseline="A", direction="minimize", rope=0.5).iloc[0]
    assert (seeds_0_to_2.n_diverged, seeds_0_to_2.n_failed, seeds_0_to_2.n_nan) == (1, 1, 0)
    # minimize: B's improvements are A - B with B's non-finite runs at 9
    assert row.mean_diff == pytest.approx(np.mean([9 - 1, 9 - 2, 0.5 - 9, 9 - 3, 9 - 4, 9 - 9]))


def test_score_runs_scores_each_table_along_its_axes_as_score_does():
    rng = np.random.default_rng(0)
    value = rng.normal(size=(6, 3, 50))
    value[rng.random(value.shape) < 0.2] = np.nan
    complete = rng.random(value.shape) > 0.1
    scores, _, _ = score_runs(value, complete, "minimize", axis=(0, 1))
    for r in range(50):
        df = pd.DataFrame({"arm": np.repeat(["A", "B", "C"], 6), "seed": np.tile(range(6), 3),
                           "value": value[:, :, r].T.ravel(),
                           "state": np.where(complete[:, :, r].T.ravel(), "complete", "diverged")})
        assert np.array_equal(score(df, "minimize").wide[["A", "B", "C"]].to_numpy(), scores[:, :, r])


# -- compare_arms is decide_batch: identical verdicts on random tables -------------------------------------------------

def random_table(rng: np.random.Generator) -> tuple[pd.DataFrame, str, int, float]:
    m, n = int(rng.integers(1, 5)), int(rng.integers(2, 31))
    direction = str(rng.choice(["minimize", "maximize"]))
    effects = rng.choice([0.0, 0.5, 2.0], m)
    rows = []
    for j, arm in enumerate(["base", *[f"arm{k}" for k in range(m)]]):
        kind = rng.integers(3)
        x = (rng.normal(0, 1, n) if kind == 0 else rng.standard_t(2, n) if kind == 1 else rng.integers(0, 3, n) * 1.0)
        x = x + (effects[j - 1] if j else 0.0)
        state = rng.choice(["complete", "diverged", "failed"], n, p=[0.85, 0.1, 0.05])
        x[state == "diverged"] = np.nan
        x[(state == "complete") & (rng.random(n) < 0.05)] = np.nan
        rows += [{"arm": arm, "seed": int(s), "value": float(v), "state": str(st)} for s, v, st in zip(range(n), x, state)]
    return pd.DataFrame(rows), direction, m, float(rng.choice([0.5, 3.0]))


def test_compare_arms_and_decide_batch_give_identical_verdicts():
    rng, seen = np.random.default_rng(7), set()
    for _ in range(150):
        df, direction, m, rope = random_table(rng)
        got = compare_arms(df, baseline="base", direction=direction, rope=rope)
        wide = df.pivot(index="seed", columns="arm", values="value")
        complete = df.pivot(index="seed", columns="arm", values="state") == "complete"
        arms = [f"arm{k}" for k in range(m)]
        scores, _, _ = score_runs(wide[["base", *arms]].to_numpy(), complete[["base", *arms]].to_numpy(), direction)
        sign = 1.0 if direction == "maximize" else -1.0
        d = sign * (scores[:, 1:] - scores[:, :1])  # (n, m): every arm ran every seed
        out = decide_batch(d, rope=rope, level=Level(alpha=0.05, m=m), lazy=True)
        assert got["verdict"].tolist() == out["verdict"].tolist()
        assert got["mean_diff"].to_numpy() == pytest.approx(sign * out["mean"])
        flipped = ~np.isnan(out["p_flip"])
        assert got["p_value"].to_numpy()[flipped] == pytest.approx(out["p_value"][flipped])
        seen |= set(out["verdict"])
    assert seen == {"better", "worse", "equivalent", "inconclusive"}


# -- plan_seeds: which seeds to run next --------------------------------------------------------------------------------

def grown(n_base: int, n_arms: dict[str, int], effects: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Values on the first n seeds per arm: baseline ~ N(0, 1), each arm = baseline + effect + N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, 40)
    values = {"A": base[:n_base].tolist()}
    for arm, n in n_arms.items():
        values[arm] = (base + effects[arm] + rng.normal(0, 0.1, 40))[:n].tolist()
    return table(values)


PLAN = {"baseline": "A", "direction": "maximize", "rope": 0.05}


def test_an_empty_table_asks_for_the_first_round_of_the_baseline_and_every_named_arm():
    empty = pd.DataFrame(columns=["arm", "seed", "value", "state"])
    assert plan_seeds(empty, arms=["B", "C"], **PLAN) == {"A": 10, "B": 10, "C": 10}
    assert plan_seeds(empty, arms=["B"], first_round=6, **PLAN) == {"A": 6, "B": 6}
    # arms can finish before the baseline has any outcome: still the first round, less what they ran
    early = table({"B": [1.0, 2.0], "C": [1.0]})
    assert plan_seeds(early, arms=["B", "C"], first_round=6, **PLAN) == {"A": 6, "B": 4, "C": 5}


def test_settled_comparisons_ask_for_nothing_and_unsettled_ones_ask_for_the_next_look():
    df = grown(10, {"B": 10, "C": 10}, {"B": 3.0, "C": 0.03})  # B settles at 10 pairs; C is small but not nil
    trace = comparison_trace(df, **PLAN)
    assert trace.set_index("arm").loc["B", "verdict"] == "better"
    assert trace.set_index("arm").loc["C", "verdict"] == "inconclusive"
    assert plan_seeds(df, **PLAN) == {"C": 5, "A": 5}
    assert plan_seeds(grown(15, {"B": 10, "C": 10}, {"B": 3.0, "C": 0.03}), **PLAN) == {"C": 5}  # baseline ran ahead
    assert plan_seeds(grown(10, {"B": 10}, {"B": 3.0}), **PLAN) == {}  # everything settled
    assert plan_seeds(grown(10, {"B": 10, "C": 4}, {"B": 3.0, "C": 0.0}), **PLAN) == {"C": 6}  # first round incomplete


def test_nothing_is_left_to_run_at_max_seeds():
    df = grown(30, {"C": 30}, {"C": 0.03})
    assert compare_arms(df, sequential=True, **PLAN).iloc[0].stop == "max_seeds (30) reached"
    assert plan_seeds(df, **PLAN) == {}
    assert plan_seeds(grown(12, {"C": 12}, {"C": 0.03}), max_seeds=12, first_round=12, **PLAN) == {}


# -- comparison_trace: one row per look, ending at the one that settled ---------------------------------------------------

def test_the_trace_ends_at_the_settling_look():
    df = grown(30, {"B": 30, "C": 30, "D": 30}, {"B": 3.0, "C": 0.1, "D": 0.0}, seed=3)
    trace = comparison_trace(df, **PLAN)
    final = compare_arms(df, sequential=True, **PLAN).set_index("arm")
    for arm, rows in trace.groupby("arm"):
        looks = rows["look"].tolist()
        assert looks == [10, 15, 20, 25, 30][:len(looks)]
        assert (rows["verdict"].iloc[:-1] == "inconclusive").all()
        assert rows["verdict"].iloc[-1] != "inconclusive" or looks[-1] == 30
        assert (rows.iloc[-1][["look", "verdict", "p_value"]] == final.loc[arm, ["look", "verdict", "p_value"]]).all()
    assert trace[trace.arm == "B"]["look"].tolist() == [10]
    assert len(trace[trace.arm == "C"]) > 1


def test_a_first_round_plan_still_validates_the_whole_table():
    # arms that ran before the baseline: the table is still checked (states, duplicates), only the
    # baseline's absence is allowed
    early = table({"B": [1.0, 2.0]}, {"B": ["complete", "crashed"]})
    with pytest.raises(ValueError, match=r"`state` must be one of"):
        plan_seeds(early, arms=["B"], first_round=6, **PLAN)
