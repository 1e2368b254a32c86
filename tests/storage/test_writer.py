"""The one writer (`armin.storage.writer`): the report benchmark's synthetic rows mean what the driver's do.

A real ablation (the real driver, trials on the in-process executor, real training on a tiny
budget) and `armin bench report`'s synthesiser are written to two files; each table's columns that
every row fills must be the same in both, so a report timed on synthetic data reads what it would
read from a real study.
"""

import sqlite3

from armin.bench.report import synthesize
from armin.orchestration.ablation_spec import parse_ablation
from armin.orchestration.driver import Driver
from armin.orchestration.executors import InlineExecutor
from armin.orchestration.plans import AblationPlan
from armin.storage import Database

SPEC = """
name = "w"
goal = "Does the synthesiser write what the driver writes?"
seed = 2
task = { name = "copy", max_len = 3 }
model = { hidden_size = 8, n_slots = 4, r_size = 4 }
train = { steps = 20, batch_size = 4, eval_every = 10, eval_sequences = 8, eval_batch_size = 8 }
factors = { "model.cell" = ["armin", "lstm"] }
design = { baseline = { "model.cell" = "armin" }, seeds = [11, 12] }
objective = { metric = "eval_loss", direction = "minimize", rope = 0.01 }
"""
TABLES = ("armin_trials", "armin_metrics", "armin_costs", "armin_spec_versions")
PROVENANCE = {"git_commit", "git_dirty"}  # the real study's checkout; a synthetic one has none


def filled(path, table: str) -> set[str]:
    """The columns of `table` that no row leaves NULL (the table has rows)."""
    con = sqlite3.connect(path)
    try:
        assert con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] > 0, (path.name, table)
        columns = [row[1] for row in con.execute(f"PRAGMA table_info({table})")]
        return {c for c in columns if not con.execute(f"SELECT 1 FROM {table} WHERE {c} IS NULL LIMIT 1").fetchall()}
    finally:
        con.close()


def test_the_report_benchmark_fills_every_column_a_real_ablation_fills(tmp_path):
    real = tmp_path / "real.db"
    Driver(AblationPlan(parse_ablation(SPEC, "w.toml")), SPEC, Database.open(real), executor=InlineExecutor(cpus=2),
           command="armin test").run()
    fake = tmp_path / "bench.db"
    synthesize(fake, 8)
    for table in TABLES:
        assert filled(real, table) == filled(fake, table), table
    assert filled(real, "armin_studies") - PROVENANCE == filled(fake, "armin_studies") - PROVENANCE
    assert filled(real, "armin_trials") >= {"arch", "cell", "config_json", "value", "value_kind", "worker_host"}
