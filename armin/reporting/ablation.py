"""The tables of an ablation report: runs, per-arm summaries, paired comparisons, factor effects, costs.

Every number comes from `armin.stats`, the engine users call on their own data: the runs table
(one row per arm and seed, the final attempt of each slot) goes to `compare_arms`,
`comparison_trace` (sequential designs), `summarize_arms` and `factorial_effects`. A run without a
finite value (diverged, failed for good, or complete with a NaN metric) stays in the table and is
scored as the worst outcome; nothing is dropped. The speed comparison is the same rule on log time
per step (`armin.costs.speed`): over the cost profile's paired rounds when the study has one, else
over the trials that have a finite, positive time per step, paired by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from armin.costs.speed import compare_speed, speed_level
from armin.model.config import MEMORY_PROBES
from armin.reporting.data import StudyData
from armin.spec.ablation import AblationSpec
from armin.storage.outcomes import final_outcomes
from armin.stats import (DEFAULT_ALPHA, DEFAULT_RARE_SHARE, Level, SequentialDesign, compare_arms,
                         comparison_trace, factorial_effects, score, summarize_arms)

ALPHA = DEFAULT_ALPHA  # family-wise error rate of every family of verdicts in a report
RARE_SHARE = DEFAULT_RARE_SHARE  # share of seeds a hidden failure mode must hit for the equivalence guard to see it
PROFILE_COLUMNS = ["profile_step_ms", "profile_us_per_element", "profile_infer_ms", "gflops_per_step", "profile_peak_mib"]
RUN_COLUMNS = ["arm", "seed", "replicate", "value", "state", "db_state", "score"]


@dataclass
class AblationTables:
    runs: pd.DataFrame  # per (arm, seed): value (NaN when none), state as the engine reads it, db state, score
    arms: pd.DataFrame  # per arm: counts of every outcome, summary of the finite values
    comparisons: pd.DataFrame  # per non-baseline arm: `compare_arms`'s row
    trace: pd.DataFrame | None  # sequential designs: every look of every comparison
    effects: pd.DataFrame | None  # main effects and two-way interactions (full factorials only)
    costs: pd.DataFrame  # per arm: parameters, time per step, peak memory, wall time, speed vs baseline
    probes: pd.DataFrame  # per arm: final read entropy and slot usage
    baseline: str
    arm_order: list[str]
    factors: list[str]
    direction: str
    rope: float
    design: SequentialDesign | None  # None: a fixed design
    level: Level  # the comparisons' family: alpha over m comparisons and K looks
    effects_level: Level | None
    speed_level: Level
    worst: float  # the value non-finite runs are scored as
    speed_excluded: pd.DataFrame  # runs left out of the trial times (no finite positive time per step)
    speed_source: str  # "cost profile" (its rounds are the pairs) or "trials" (no profile: seeds are the pairs)
    profile: dict | None  # the profile's device, host, threads, rounds, steps per round; None without one
    not_finished: int  # slots whose latest attempt is running, pruned or due for a retry (not in `runs`)


def profile_facts(profile: pd.DataFrame) -> dict | None:
    """Where and how the cost profile was measured, for the report's words; None without a profile."""
    if profile.empty:
        return None
    first = profile.iloc[0]
    return {"device": first["device"], "host": first["host"], "threads": int(first["threads"]), "clock": first["clock"],
            "rounds": int(profile.groupby("arm")["round"].nunique().min()), "steps_per_round": int(first["steps_per_round"]),
            "warmup_rounds": int(first["warmup_rounds"])}


def arm_levels(spec: AblationSpec) -> dict[str, dict[str, object]]:
    """arm name -> {factor (short name): level} for factorial arms."""
    return {a.name: {path.removeprefix("model."): level for path, level in a.levels} for a in spec.arms if a.levels}


def runs_table(attempts: pd.DataFrame, spec: AblationSpec, direction: str) -> pd.DataFrame:
    """One row per finished (arm, seed) slot of the ablation's arms, as the engine reads it, with its score.

    Read by `final_outcomes` from every attempt (in run order), the driver's own reading: an attempt
    the driver will retry is not an outcome yet, and `replicate` is the seed's position in the spec's
    run order.
    """
    arm_order = [a.name for a in spec.arms]
    runs = final_outcomes(attempts[attempts["arm"].isin(arm_order)], list(spec.seeds), max_retries=spec.max_retries)
    if runs.empty:
        return runs.assign(score=pd.Series(dtype=float))[RUN_COLUMNS]
    scored = score(engine_runs(runs), direction)
    long = scored.wide.stack().rename("score").reset_index().rename(columns={"seed": "replicate"})
    return runs.merge(long, on=["arm", "replicate"], how="left")[RUN_COLUMNS]


def engine_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table in the engine's columns, paired and ordered by replicate (run order)."""
    return runs[["arm", "replicate", "value", "state"]].rename(columns={"replicate": "seed"})


def _compare(runs: pd.DataFrame, baseline: str, family: list[str], design: SequentialDesign | None,
             **kw) -> pd.DataFrame:
    """`compare_arms` over the family, rows in `family` order; no pairs at all while the baseline has no runs."""
    if baseline not in set(runs["arm"]):
        runs = runs.iloc[0:0]
    seq = dict(sequential=True, first_round=design.first_round, step=design.step,
               max_seeds=design.max_seeds) if design else {}
    table = compare_arms(engine_runs(runs), baseline=baseline, alpha=ALPHA,
                         rare_share=RARE_SHARE, arms=family, **seq, **kw)
    return table.set_index("arm").reindex(family).reset_index()


def ablation_tables(data: StudyData) -> AblationTables:
    spec, metric = data.resolved, data.metric
    direction, rope, baseline, design = spec.objective.direction, spec.rope, spec.baseline, spec.sequential
    arm_order = [a.name for a in spec.arms]
    family = [a for a in arm_order if a != baseline]
    final = data.final[data.final["arm"].isin(arm_order)]
    runs = runs_table(data.attempts.sort_values("trial"), spec, direction)

    # ---- per arm: every outcome counted, the finite values summarised
    arms = summarize_arms(runs, arms=arm_order)
    attempts = data.attempts["arm"].value_counts()
    arms.insert(arms.columns.get_loc("nan") + 1, "attempts", [int(attempts.get(a, 0)) for a in arm_order])

    # ---- paired comparisons with the baseline: one family, simultaneous over its m comparisons and K looks
    comparisons = _compare(runs, baseline, family, design, direction=direction, rope=rope)
    trace = None
    if design is not None:
        paired = runs if baseline in set(runs["arm"]) else runs.iloc[0:0]
        trace = comparison_trace(engine_runs(paired), baseline=baseline, direction=direction,
                                 rope=rope, alpha=ALPHA, first_round=design.first_round, step=design.step,
                                 max_seeds=design.max_seeds, rare_share=RARE_SHARE, arms=family)
        trace = (trace.assign(_order=trace["arm"].map({a: i for i, a in enumerate(family)}))
                 .sort_values(["_order", "n_pairs"], kind="stable").drop(columns="_order").reset_index(drop=True))
    level = Level(alpha=ALPHA, m=max(1, len(family)), looks=design.looks if design else 1)

    # ---- factor effects (full factorials only), one family of their own
    levels = arm_levels(spec)
    factors = list(next(iter(levels.values())).keys()) if levels else []
    effects, effects_level = None, None
    if factors and not runs[runs["arm"].isin(levels)].empty:
        effects = factorial_effects(engine_runs(runs), levels, direction=direction, rope=rope,
                                    alpha=ALPHA, rare_share=RARE_SHARE, looks=design.looks if design else 1)
        if effects.empty:
            effects = None
        else:
            effects_level = Level(alpha=ALPHA, m=len(effects), looks=design.looks if design else 1)

    # ---- costs, speed and memory probes
    costs, speed_excluded, speed_source = cost_table(final, arm_order, baseline, data.profile)
    done = final[(final["state"] == "COMPLETE") & final["objective"].notna()]
    probe_cols = [c for c in MEMORY_PROBES if c in final.columns]
    probes = (done.groupby("arm")[probe_cols].mean().reindex(arm_order).reset_index()
              if probe_cols else pd.DataFrame({"arm": arm_order}))
    worst = score(runs, direction).worst if len(runs) else math.nan
    return AblationTables(runs=runs, arms=arms, comparisons=comparisons, trace=trace, effects=effects, costs=costs,
                          probes=probes, baseline=baseline, arm_order=arm_order, factors=factors,
                          direction=direction, rope=rope, design=design, level=level, effects_level=effects_level,
                          speed_level=speed_level(arm_order, baseline), worst=worst,
                          speed_excluded=speed_excluded, speed_source=speed_source,
                          profile=profile_facts(data.profile),
                          not_finished=len(final) - len(runs))


def _param_count(values: pd.Series) -> object:
    """An arm's parameter count as an integer (its most common value: every seed builds the same model)."""
    values = values.dropna()
    return int(values.mode().iloc[0]) if len(values) else pd.NA


def _mean(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def profile_costs(profile: pd.DataFrame, arm_order: list[str]) -> pd.DataFrame:
    """Per arm, from the cost profile: time per step and per element, inference, FLOPs, peak step memory."""
    rows = []
    for arm in arm_order:
        mine = profile[profile["arm"] == arm]
        if mine.empty:
            rows.append({"arm": arm})  # not profiled: its profile columns are NaN
            continue
        rows.append({"arm": arm, "profile_step_ms": 1e3 * _mean(mine["train_step_s"]),
                     "profile_us_per_element": 1e6 * _mean(mine["train_step_s"] / mine["elements"]),
                     "profile_infer_ms": 1e3 * _mean(mine["infer_s"]),
                     "gflops_per_step": _mean(mine["flops_per_step"]) / 1e9,
                     "profile_peak_mib": _mean(mine["peak_step_bytes"]) / 2**20})
    return pd.DataFrame(rows, columns=["arm", *PROFILE_COLUMNS])


def cost_table(final: pd.DataFrame, arm_order: list[str], baseline: str,
               profile: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Costs per arm, and the speed verdicts: (costs, runs left out of the trial times, the verdicts' source).

    With a cost profile of every arm, the speed verdicts compare its rounds (paired: same batches,
    interleaved, warm) and the trials' own times stand beside it (`trial_vs_profile`); without one,
    they compare the trials' times per step, paired by seed. Only trials with a finite, positive time
    per step enter the trial figures (a run that diverged in its warm-up timed no step); the others are
    the second table.
    """
    profile = profile if profile is not None else pd.DataFrame(columns=["arm"])
    ran = final[final["n_params"].notna()]  # every run with a cost row
    t = pd.to_numeric(final["time_per_step_s"], errors="coerce").astype(float)
    timed = final[np.isfinite(t) & (t > 0)]
    excluded = final.loc[~final.index.isin(timed.index), ["arm", "seed", "state", "time_per_step_s"]]
    profiled = set(profile["arm"]) >= set(arm_order) and len(profile) > 0
    if profiled:
        samples = profile.rename(columns={"round": "pair", "train_step_s": "seconds"})
        source = "cost profile"
    else:
        samples = pd.DataFrame({"arm": timed["arm"], "pair": timed["seed"].astype(int),
                                "seconds": timed["time_per_step_s"].astype(float)})
        source = "trials"
    speed = compare_speed(samples, baseline, arm_order)
    rows = []
    for arm in arm_order:
        mine, fast = ran[ran["arm"] == arm], timed[timed["arm"] == arm]
        rows.append({"arm": arm, "n_params": _param_count(mine["n_params"]),
                     "time_per_step_ms": 1e3 * _mean(fast["time_per_step_s"]),
                     "cpu_time_per_step_ms": 1e3 * _mean(fast["cpu_time_per_step_s"]),
                     "warmup_s": _mean(mine["warmup_s"]),
                     "peak_memory_mib": _mean(mine["peak_memory_bytes"]) / 2**20,
                     "wall_time_s": _mean(mine["wall_time_s"]), "timed_runs": len(fast)})
    costs = pd.DataFrame(rows).merge(profile_costs(profile, arm_order), on="arm").merge(speed, on="arm")
    clock = profile["clock"].iloc[0] if profiled else "wall"
    trial_ms = costs["cpu_time_per_step_ms" if clock == "cpu time" else "time_per_step_ms"]
    costs["trial_vs_profile"] = trial_ms / costs["profile_step_ms"]  # on the profile's clock
    costs["n_params"] = costs["n_params"].astype("Int64")
    return costs, excluded.reset_index(drop=True), source
