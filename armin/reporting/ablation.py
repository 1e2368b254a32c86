"""The tables of an ablation report: per-arm summaries, paired comparisons, factor effects, costs.

Every interval is over seeds (armin.reporting.stats.mean_ci); every comparison is
paired by seed and only uses seeds where both arms finished (completed) with a finite value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from armin.reporting import stats
from armin.reporting.data import FAILURE_STATES, StudyData

SPEED_ROPE = math.log(1.05)  # time-per-step ratios within 5% of the baseline count as "the same speed"

SOURCES_OF_VARIATION = (
    "Intervals are over seeds (percentile bootstrap from 10 seeds, Student-t below). Each seed changes the training batches, the initial "
    "weights and the Gumbel noise together (all derived from the run seed), so the intervals cover that "
    "training randomness. They do not cover the choice of evaluation set (one fixed set, the same for every "
    "arm and seed), hardware or library nondeterminism, or the choice of hyperparameters, which are held "
    "fixed. Comparisons are paired by seed: differences between seeds common to both arms cancel out.")


@dataclass
class AblationTables:
    arms: pd.DataFrame  # per arm: counts, summary of the primary metric
    comparisons: pd.DataFrame  # per non-baseline arm: the paired comparison with the baseline
    main_effects: pd.DataFrame | None
    interactions: pd.DataFrame | None
    costs: pd.DataFrame  # per arm: parameters, time per step, peak memory, wall time, speed vs baseline
    probes: pd.DataFrame  # per arm: final read entropy and slot usage
    values: pd.DataFrame  # per (arm, seed): the primary metric of completed runs
    baseline: str
    arm_order: list[str]
    factors: list[str]


def arm_levels(spec: dict) -> dict[str, dict[str, object]]:
    """arm name -> {factor (short name): level} for factorial arms."""
    return {a["name"]: {path.removeprefix("model."): level for path, level in a["levels"]}
            for a in spec["arms"] if a["levels"]}


def ablation_tables(data: StudyData, *, n_boot: int = stats.DEFAULT_N_BOOT) -> AblationTables:
    spec, metric = data.spec, data.metric
    arm_order = [a["name"] for a in spec["arms"]]
    baseline = spec["baseline"]
    final = data.final[data.final["arm"].isin(arm_order)]
    done = final[(final["state"] == "COMPLETE") & final["objective"].notna()]
    values = done[["arm", "seed", "objective"]].rename(columns={"objective": metric})

    # ---- per arm
    rows = []
    for arm in arm_order:
        mine = final[final["arm"] == arm]
        v = values.loc[values["arm"] == arm, metric].to_numpy(float)
        s = stats.summarize(v, n_boot=n_boot) if len(v) else None
        rows.append({"arm": arm, "seeds": len(spec["seeds"]), "completed": int((mine["state"] == "COMPLETE").sum()),
                     "diverged": int((mine["state"] == "DIVERGED").sum()),
                     "failed": int(mine["state"].isin(FAILURE_STATES).sum()),
                     "attempts": int((data.attempts["arm"] == arm).sum()),
                     "mean": s.mean if s else math.nan, "median": s.median if s else math.nan,
                     "ci_low": s.ci_low if s else math.nan, "ci_high": s.ci_high if s else math.nan,
                     "std": s.std if s else math.nan})
    arms = pd.DataFrame(rows)

    # ---- paired comparisons with the baseline, Holm across them
    comps, names = [], []
    for arm in arm_order:
        if arm == baseline:
            continue
        a, b, _ = stats.align_by_seed(values, value_col=metric, arm=arm, baseline=baseline)
        comps.append(stats.compare_paired(a, b, higher_is_better=data.higher_is_better, rope=spec["rope"],
                                          n_boot=n_boot))
        names.append(arm)
    comps = stats.with_holm(comps)
    comparisons = pd.DataFrame([{"arm": n, **{k: v for k, v in asdict(c).items() if k != "notes"},
                                 "notes": "; ".join(c.notes)} for n, c in zip(names, comps)])

    # ---- factor effects (factorial arms only)
    levels = arm_levels(spec)
    factors = list(next(iter(levels.values())).keys()) if levels else []
    main = inter = None
    factorial = values[values["arm"].isin(levels)]
    if factors and not factorial.empty:
        design = factorial.assign(**{f: factorial["arm"].map(lambda a, f=f: str(levels[a][f])) for f in factors})
        main = stats.main_effects(design, factors, metric, n_boot=n_boot)
        if len(factors) >= 2:
            inter = stats.interactions(design, factors, metric, n_boot=n_boot)

    # ---- costs and memory probes
    costs = cost_table(final, arm_order, baseline, n_boot)
    probe_cols = [c for c in ("read_entropy", "slot_usage") if c in final.columns]
    probes = (done.groupby("arm")[probe_cols].mean().reindex(arm_order).reset_index()
              if probe_cols else pd.DataFrame({"arm": arm_order}))
    return AblationTables(arms=arms, comparisons=comparisons, main_effects=main, interactions=inter, costs=costs,
                          probes=probes, values=values, baseline=baseline, arm_order=arm_order, factors=factors)


def cost_table(final: pd.DataFrame, arm_order: list[str], baseline: str, n_boot: int) -> pd.DataFrame:
    """Costs per arm, and time per step relative to the baseline, paired by seed (geometric mean ratio)."""
    ran = final[final["time_per_step_s"].notna()]
    rows = []
    for arm in arm_order:
        mine = ran[ran["arm"] == arm]
        row = {"arm": arm, "n_params": mine["n_params"].median(), "time_per_step_ms": 1e3 * mine["time_per_step_s"].mean(),
               "peak_memory_mib": mine["peak_memory_bytes"].mean() / 2**20, "wall_time_s": mine["wall_time_s"].mean(),
               "speed_ratio": math.nan, "speed_ratio_low": math.nan, "speed_ratio_high": math.nan,
               "speed_verdict": ""}
        if arm != baseline:
            logs = ran.assign(log_t=np.log(ran["time_per_step_s"]))
            a, b, _ = stats.align_by_seed(logs, value_col="log_t", arm=arm, baseline=baseline)
            if len(a) >= 2:
                with warnings.catch_warnings():  # near-identical timings: scipy warns, the verdict still holds
                    warnings.simplefilter("ignore", RuntimeWarning)
                    c = stats.compare_paired(a, b, higher_is_better=False, rope=SPEED_ROPE, n_boot=n_boot)
                row |= {"speed_ratio": math.exp(c.mean_diff), "speed_ratio_low": math.exp(c.ci_low),
                        "speed_ratio_high": math.exp(c.ci_high),
                        "speed_verdict": {"better": "faster", "worse": "slower", "equivalent": "same speed",
                                          "inconclusive": "inconclusive"}[c.verdict]}
        rows.append(row)
    return pd.DataFrame(rows)
