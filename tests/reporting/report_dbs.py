"""Ablation databases with chosen outcomes, written through the storage layer as the driver writes them.

The spec JSON is the real resolved spec of an ablation file (`AblationPlan.spec_json`), with the
driver's `sequential` key set or removed; trials, metrics and costs are ORM rows in a real SQLite
file, so the report reads them through its ordinary path (the query views, `load_study`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from armin.orchestration.ablation_spec import parse_ablation
from armin.orchestration.plans import AblationPlan
from armin.storage import Cost, Database, Metric, Study, Trial, TrialState, utcnow

SPEC = """
name = "{name}"
goal = "Which cell, and is the plain LSTM as good?"
seed = 0
[task]
name = "copy"
max_len = 3
[model]
hidden_size = 8
[factors]
"model.cell" = ["armin", "lstm"]
[extra_arms.plain_lstm]
"model.arch" = "lstm"
[design]
baseline = {{ "model.cell" = "armin" }}
seeds = {seeds}
[objective]
metric = "bits_error"
direction = "minimize"
rope = {rope}
"""
BASELINE, LSTM, PLAIN = "cell=armin", "cell=lstm", "plain_lstm"
STEPS = (10, 20)


@dataclass
class Run:
    arm: str
    replicate: int
    value: float | None  # the objective; None: no value at all
    state: str = "COMPLETE"
    time_per_step_s: float | None = 0.01  # None: no cost row
    n_params: int = 92_518
    diverged_step: int | None = None
    attempt: int = 1  # list a slot's earlier attempts before it, attempt 1, 2, ... (the retry rule reads them all)
    reason: str | None = None  # the failure reason: an environmental loss is told by it (armin.storage.failures)


def write_ablation(path: Path, runs: list[Run], *, name: str = "synthetic", seeds: int = 12, rope: float = 0.5,
                   sequential: dict | None = None, keep_key: bool = True, data_source: str = "generated") -> Path:
    """A finished ablation with these runs (one row each, attempt `Run.attempt`). `keep_key=False` drops `sequential`
    from the spec JSON, as databases written before adaptive seeds have it."""
    text = SPEC.format(name=name, seeds=seeds, rope=rope)
    plan = AblationPlan(parse_ablation(text, f"{name}.toml"))
    spec = json.loads(plan.spec_json())
    if keep_key:
        spec["sequential"] = sequential
    else:
        spec.pop("sequential", None)
    arms = [a.name for a in plan.spec.arms]
    db = Database.open(path)
    with db.session() as s:
        study = Study(name=name, kind="ablation", goal=plan.goal, spec_text=text, spec_json=json.dumps(spec),
                      spec_hash=plan.digest(), optuna_study_name=name, status="complete", created_at=utcnow(),
                      updated_at=utcnow(), command="armin test", versions_json="{}")
        s.add(study)
        s.flush()
        for number, run in enumerate(runs):
            arm = plan.spec.arm(run.arm)
            overrides = dict(arm.overrides)
            trial = Trial(study_id=study.id, number=number, config_id=arms.index(run.arm), replicate=run.replicate,
                          seed=plan.spec.seeds[run.replicate], attempt=run.attempt, state=TrialState[run.state],
                          params_json=json.dumps(overrides), arm=run.arm,
                          arch=overrides.get("model.arch", "armin"), cell=overrides.get("model.cell", "lstm"),
                          worker_host="test", device="cpu", data_source=data_source,
                          diverged_step=run.diverged_step, failure_reason=run.reason)
            trial.set_objective(run.value)
            if run.state == "COMPLETE":
                for step in STEPS:
                    final = run.value if run.value is not None else float("nan")
                    value = final if step == STEPS[-1] else final + 1.0
                    trial.metrics += [Metric.of(step, "bits_error", value), Metric.of(step, "eval_loss", 0.5)]
            if run.time_per_step_s is not None:
                trial.cost = Cost(n_params=run.n_params, time_per_step_s=run.time_per_step_s,
                                  steps_per_s=1 / run.time_per_step_s if run.time_per_step_s else 0.0,
                                  wall_time_s=1.5, peak_memory_bytes=300 * 2**20)
            s.add(trial)
    db.close()
    return path
