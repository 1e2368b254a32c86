"""`armin bench report`: time `armin report` on a synthetic ablation of many trials (default 10,000).

The database is written the way the driver writes it (same schema, same spec JSON, rows built by
`armin.storage.writer`, the driver's writer) but with values drawn from known distributions
instead of training, so the benchmark takes seconds. It prints the time of each phase of the
report and the total against the 10-second budget.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

BUDGET_S = 10.0  # the target for 10,000 trials on this machine
ARMS_SPEC = """
name = "bench-report"
goal = "benchmark: report generation at scale"
seed = 0
[task]
name = "copy"
[factors]
"model.addressing" = ["hidden", "tardis"]
"model.cell" = ["armin", "lstm"]
[design]
baseline = {{ "model.addressing" = "hidden", "model.cell" = "armin" }}
seeds = {seeds}
[objective]
metric = "bits_error"
direction = "minimize"
rope = 0.5
"""
STEPS = (1000, 2000, 3000, 4000, 5000)
METRICS = ("train_loss", "eval_loss", "bits_error", "read_entropy", "slot_usage", "temperature")


def synthesize(db_path: Path, n_trials: int, seed: int = 0) -> None:
    """Rows built by `armin.storage.writer`, as the driver builds them, bulk-inserted."""
    from sqlalchemy import insert

    from armin.config import to_mapping
    from armin.spec.ablation import build_arm_run, parse_ablation
    from armin.orchestration.plans import AblationPlan
    from armin.storage import Cost, Database, Metric, Trial, TrialState, writer
    from armin.tasks import build_task

    rng = np.random.default_rng(seed)
    n_seeds = max(n_trials // 4, 2)
    text = ARMS_SPEC.format(seeds=n_seeds)
    plan = AblationPlan(parse_ablation(text, "<bench>"))
    db = Database.open(db_path)
    with db.session() as s:
        study = writer.new_study(s, name=plan.name, kind="ablation", goal=plan.goal, spec_text=text,
                                 spec_json=plan.spec_json(), spec_hash=plan.digest(), command="armin bench report",
                                 versions={}, status="complete")
        writer.add_spec_version(study, forced=False, changes=None, command="armin bench report")
        trials, metrics, costs = [], [], []
        for config_id, arm in enumerate(plan.spec.arms):
            m = dict(arm.overrides)
            effect = 2.0 * (m["model.addressing"] == "tardis") + 1.0 * (m["model.cell"] == "lstm")
            run = build_arm_run(plan.spec, arm, plan.spec.seeds[0])  # the arm's model; its runs differ by seed only
            mapping, data_source = to_mapping(run), build_task(run.task).data_source
            for rep, run_seed in enumerate(plan.spec.seeds):
                tid = len(trials) + 1
                final = 10 + effect + rng.normal(0, 1)
                step_s = 0.03 * (1 + 0.1 * effect) * rng.lognormal(0, 0.05)
                result = dict(data_source=data_source, n_params=90_000, steps_per_s=30.0, wall_time_s=150.0,
                              time_per_step_s=step_s, cpu_time_per_step_s=step_s,  # one thread: CPU time = wall
                              peak_memory_bytes=400 * 2**20)
                trials.append(dict(
                    writer.trial_row(study_id=study.id, number=tid - 1, config_id=config_id, replicate=rep,
                                     seed=run_seed, params=m, run_mapping={**mapping, "seed": run_seed},
                                     model=run.model, arm=arm.name),
                    id=tid, **writer.worker_fields(host="bench", device="cpu"), **writer.result_fields(result),
                    **writer.outcome_fields(TrialState.COMPLETE, value=final)))
                for i, step in enumerate(STEPS):
                    frac = (i + 1) / len(STEPS)
                    values = dict(train_loss=0.7 - 0.3 * frac, eval_loss=0.7 - 0.3 * frac,
                                  bits_error=final + 20 * (1 - frac), read_entropy=2.0 * (1 - frac), slot_usage=0.3,
                                  temperature=1.0)
                    metrics += writer.metric_rows(tid, step, values)
                costs.append(writer.cost_row(result, tid))
        for table, rows in ((Trial, trials), (Metric, metrics), (Cost, costs)):
            s.execute(insert(table.__table__), rows)
    db.close()


def bench_report(n_trials: int = 10_000, as_json: bool = False) -> dict:
    from armin.reporting import render
    from armin.reporting.ablation import ablation_tables
    from armin.reporting.data import load_study

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        synthesize(db, n_trials)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = load_study(db, "bench-report")
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        ablation_tables(data)
        t_stats = time.perf_counter() - t0
        t0 = time.perf_counter()
        render.build_report(db, "bench-report", Path(tmp) / "report")  # the whole command, end to end
        t_total = time.perf_counter() - t0
    out = {"trials": len(data.attempts), "metric_rows": len(data.curves), "synthesize_s": t_write,
           "load_s": t_load, "statistics_s": t_stats, "report_total_s": t_total, "budget_s": BUDGET_S,
           "fraction_of_budget": t_total / BUDGET_S}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        print(f"report over {out['trials']:,} trials ({out['metric_rows']:,} evaluation rows): "
              f"{t_total:.2f} s end to end = {t_total / BUDGET_S:.0%} of the {BUDGET_S:g} s budget "
              f"[of which loading {t_load:.2f} s, statistics {t_stats:.2f} s; the rest is figures and files]")
    return out
