"""Reports and queries over real databases written by real (tiny) studies and ablations."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from armin.orchestration.ablation_spec import parse_ablation
from armin.orchestration.driver import Driver
from armin.orchestration.plans import AblationPlan, SearchPlan
from armin.orchestration.spec import parse_spec
from armin.reporting.query import QueryError, curves, sql, trials
from armin.reporting.render import build_report
from armin.storage import Database

ARMIN = [sys.executable, "-m", "armin.cli.main"]
COMMON = """
seed = 4
[task]
name = "copy"
max_len = 3
[model]
hidden_size = 8
n_slots = 4
r_size = 4
[optimizer]
lr = 1e-3
[train]
steps = 20
batch_size = 4
eval_every = 10
eval_sequences = 8
eval_batch_size = 8
"""
ABLATION = 'name = "rep-abl"\ngoal = "Does the report show every arm?"\n' + COMMON + """
[factors]
"model.cell" = ["armin", "lstm"]
"model.addressing" = ["hidden", "input_only"]
[extra_arms.plain]
"model.arch" = "lstm"
[design]
baseline = { "model.cell" = "armin", "model.addressing" = "hidden" }
seeds = 3
[objective]
metric = "eval_loss"
direction = "minimize"
rope = 0.001
"""
SEARCH = 'name = "rep-search"\ngoal = "Does the search report work?"\n' + COMMON + """
[search]
n_trials = 4
sampler = "random"
pruner = "none"
[objective]
metric = "eval_loss"
direction = "minimize"
[space]
"model.cell" = { choices = ["armin", "lstm"] }
"model.hidden_size" = { low = 4, high = 8, step = 4 }
"""


@pytest.fixture(scope="module")
def db(ray_cluster, tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "armin.db"
    database = Database.open(path)
    Driver(AblationPlan(parse_ablation(ABLATION, "rep.toml")), ABLATION, database, command="armin test").run()
    Driver(SearchPlan(parse_spec(SEARCH, "s.toml")), SEARCH, database, command="armin test").run()
    return path


def test_ablation_report_files_and_numbers(db, tmp_path):
    index = build_report(db, "rep-abl", tmp_path / "r")
    out = index.parent
    for name in ("index.html", "report.md", "arms.csv", "comparisons.csv", "main_effects.csv", "interactions.csv",
                 "costs.csv", "probes.csv", "provenance.csv", "trials.csv"):
        assert (out / name).is_file(), name
    for fig in ("learning_curves", "comparisons", "quality_vs_cost", "memory_probes"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (out / "figures" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
    arms = pd.read_csv(out / "arms.csv")
    assert list(arms["arm"]) == ["cell=armin, addressing=hidden", "cell=armin, addressing=input_only",
                                 "cell=lstm, addressing=hidden", "cell=lstm, addressing=input_only", "plain"]
    assert (arms["completed"] == 3).all() and (arms["failed"] == 0).all()
    # the table's means are the database's values
    t = trials(db, "rep-abl")
    expected = t.groupby("arm")["eval_loss"].mean()
    for row in arms.itertuples():
        assert row.mean == pytest.approx(expected[row.arm])
    comp = pd.read_csv(out / "comparisons.csv")
    assert len(comp) == 4 and (comp["n_pairs"] == 3).all()
    assert set(comp["verdict"]) <= {"better", "worse", "equivalent", "inconclusive"}
    assert (comp["p_holm"] >= comp["wilcoxon_p"] - 1e-12).all()
    effects = pd.read_csv(out / "main_effects.csv")
    assert set(effects["factor"]) == {"cell", "addressing"}  # the extra arm is not in the factorial
    costs = pd.read_csv(out / "costs.csv")
    assert costs.loc[costs["arm"] == "plain", "n_params"].item() < costs["n_params"].max()
    md = (out / "report.md").read_text()
    for heading in ("## Arms", "## Comparisons with the baseline", "## Main effects", "## Learning curves",
                    "## Memory probes", "## Cost beside quality", "## Sources of variation", "## Provenance"):
        assert heading in md
    prov = pd.read_csv(out / "provenance.csv").set_index("item")["value"]
    assert prov["command"] == "armin test" and "torch" in prov["versions"] and "cpu" in prov["hardware"]


def test_search_report(db, tmp_path):
    out = build_report(db, "rep-search", tmp_path / "s").parent
    assert (out / "figures" / "optimization_history.png").is_file()
    best = pd.read_csv(out / "best.csv")
    assert len(best) >= 1 and "model.cell" in best.columns
    assert best["objective"].is_monotonic_increasing  # minimize: best first
    counts = pd.read_csv(out / "counts.csv")
    assert counts["attempts"].sum() == 4


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.environ.get("ARMIN_NO_INSTALL"):
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900, env=env)
    return shutil.which("chromium")


def test_html_report_opens_in_headless_chromium_without_errors(db, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed and cannot be installed here (needs root and apt-get)")
    index = build_report(db, "rep-abl", tmp_path / "r")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}",
             "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    p = subprocess.run([browser, *flags, "--dump-dom", index.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "<h1>Ablation rep-abl</h1>" in p.stdout and p.stdout.count('src="data:image/png;base64,') == 4
    console_errors = [line for line in p.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line]
    assert not console_errors, console_errors
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", index.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_query_views_and_read_only_guard(db):
    t = trials(db, "rep-abl")
    assert len(t) == 15 and {"arm", "seed", "state", "eval_loss", "bits_error", "read_entropy", "n_params",
                             "time_per_step_s"} <= set(t.columns)
    c = curves(db, "rep-abl")
    assert set(c["step"]) == {10, 20}
    # 12 memory runs record 6 metrics per evaluation; the 3 plain-LSTM runs have no memory probes
    assert len(c) == 12 * 2 * 6 + 3 * 2 * 4
    assert c.loc[c["arm"] == "plain", "metric"].nunique() == 4
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for statement in ("DELETE FROM armin_trials", "UPDATE armin_trials SET seed = 0", "DROP TABLE armin_costs",
                      "CREATE TABLE x (a)", "INSERT INTO armin_meta VALUES ('a', 'b')"):
        with pytest.raises(QueryError, match="refused|read-only"):
            sql(db, statement)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert len(sql(db, "SELECT * FROM armin_trials")) == 15 + 4
    with pytest.raises(QueryError, match="no study named 'nope'"):
        trials(db, "nope")


def test_query_and_report_commands(db, tmp_path):
    p = subprocess.run([*ARMIN, "query", "SELECT arm, COUNT(*) AS n FROM trials WHERE study = 'rep-abl' GROUP BY arm",
                        "--db", str(db), "--format", "json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(r["n"] for r in json.loads(p.stdout)) == [3] * 5
    p = subprocess.run([*ARMIN, "query", "trials", "rep-search", "--db", str(db), "--format", "csv"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("study,")
    p = subprocess.run([*ARMIN, "query", "DELETE FROM armin_trials", "--db", str(db)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "refused" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run([*ARMIN, "report", "rep-abl", "--db", str(db), "--out", str(tmp_path / "cli")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and (tmp_path / "cli" / "index.html").is_file()
    p = subprocess.run([*ARMIN, "report", "missing", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no study named 'missing'" in p.stderr
