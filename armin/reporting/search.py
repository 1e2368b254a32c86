"""The tables of a search report: outcome counts, the best configurations, parameter importances."""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
import pandas as pd

from armin.costs.speed import compare_speed
from armin.reporting.ablation import profile_costs
from armin.reporting.data import StudyData

TOP_CONFIGS = 5


@dataclass
class SearchTables:
    counts: pd.DataFrame  # attempts by state
    best: pd.DataFrame  # the best configurations: params, mean objective over their seeds, seeds
    importances: pd.DataFrame  # parameter, importance
    importance_note: str
    profile: pd.DataFrame  # the cost profile of the best configurations (best first), one row each; empty without one


def search_tables(data: StudyData, db_url: str) -> SearchTables:
    counts = data.attempts["state"].value_counts().rename_axis("state").reset_index(name="attempts")
    done = data.final[(data.final["state"] == "COMPLETE") & data.final["objective"].notna()]
    best = pd.DataFrame()
    if not done.empty:
        by_config = done.groupby("config_id").agg(objective=("objective", "mean"), n_seeds=("seed", "count"),
                                                  seeds=("seed", lambda s: ", ".join(map(str, s))),
                                                  params=("params_json", "first")).reset_index()
        by_config = by_config.sort_values("objective", ascending=not data.higher_is_better).head(TOP_CONFIGS)
        params = pd.DataFrame([json.loads(p) for p in by_config["params"]], index=by_config.index)
        best = pd.concat([by_config.drop(columns="params"), params], axis=1)
    importances, note = param_importances(data, db_url)
    return SearchTables(counts=counts, best=best, importances=importances, importance_note=note,
                        profile=profile_table(data.profile))


def profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    """The profiled configurations (stored best first) with their costs and speed against the best one."""
    if profile.empty:
        return pd.DataFrame()
    arms = list(dict.fromkeys(profile["arm"]))
    samples = profile.rename(columns={"round": "pair", "train_step_s": "seconds"})
    speed = compare_speed(samples, arms[0], arms)
    return profile_costs(profile, arms).merge(speed, on="arm")


def param_importances(data: StudyData, db_url: str) -> tuple[pd.DataFrame, str]:
    """Optuna's default importance evaluator on the completed trials of the study's Optuna study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=data.name, storage=db_url)
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, KeyError) as e:
        return pd.DataFrame(columns=["parameter", "importance"]), f"not computed: {e}"
    table = pd.DataFrame({"parameter": list(values), "importance": list(values.values())})
    return table, "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator) over completed trials"
