"""A study whose every run diverges in its warm-up steps: trials, cost profile and report all still work."""

import pandas as pd

from armin.orchestration.ablation_spec import parse_ablation
from armin.orchestration.driver import Driver
from armin.orchestration.plans import AblationPlan
from armin.reporting.query import cost_profile, trials
from armin.reporting.render import build_report
from armin.storage import Database

SPEC = """
name = "blow-up"
goal = "Does a study of runs that diverge at once still report?"
seed = 1
task = { name = "copy", max_len = 3 }
model = { hidden_size = 8, n_slots = 4, r_size = 4 }
optimizer = { name = "adam", lr = 1e37, clip = "none" }  # every arm diverges at step 2: inside the warm-up
train = { steps = 12, batch_size = 4, eval_every = 6, eval_sequences = 8, eval_batch_size = 8 }
[factors]
"model.cell" = ["armin", "lstm"]
[design]
baseline = { "model.cell" = "armin" }
seeds = 2
[objective]
metric = "eval_loss"
direction = "minimize"
rope = 0.1
"""


def test_runs_diverging_in_the_warmup_break_nothing_downstream(ray_cluster, tmp_path):
    db = Database.open(tmp_path / "b.db")
    Driver(AblationPlan(parse_ablation(SPEC, "b.toml")), SPEC, db, command="armin test").run()
    db.close()
    t = trials(tmp_path / "b.db", "blow-up")
    assert (t["state"] == "DIVERGED").all() and (t["diverged_step"] == 2).all()  # step 1 is finite, step 2 is not
    # one step done, inside the warm-up: no timed step, no full measured step
    assert (t["time_per_step_s"] == 0).all() and t["peak_memory_bytes"].isna().all() and (t["warmup_steps"] == 1).all()
    assert len(cost_profile(tmp_path / "b.db", "blow-up")) > 0  # profiled all the same
    out = build_report(tmp_path / "b.db", "blow-up", tmp_path / "r").parent
    costs = pd.read_csv(out / "costs.csv")
    assert costs["time_per_step_ms"].isna().all() and costs["profile_step_ms"].notna().all()
    md = (out / "report.md").read_text()
    assert "## Cost beside quality" in md and "left out of the trial time" in md
