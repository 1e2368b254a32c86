"""The Monte-Carlo harness (`armin.stats.montecarlo`) and `armin bench stats`: measured error rates within target."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from armin.cli.main import main
from armin.stats import compare_arms, plan_seeds
from armin.stats.montecarlo import (CONFIRM_FACTOR, DEFAULT_REPS, DESIGN, MC_SIGMAS, QUICK_REPS, Cell, Key, Property,
                                    Rate, arm_values, decide_family, run_all, simulate_sequential)

REPS = 500  # per cell of the quick grid (5,000 for each re-measured worst cell): about 8 s


@pytest.fixture(scope="module")
def quick_report():
    return run_all(REPS, quick=True, seed=1)


def beyond_target(prop: Property, cell: Cell) -> float:
    """How many Monte-Carlo SE the cell's rate lies beyond the target (negative: inside)."""
    r = cell.rate
    gap = r.value - prop.target if prop.bound == "max" else prop.target - r.value
    return gap / r.se if r.se > 0 else (-np.inf if gap <= 0 else np.inf)


# Every measured rate of every cell, and every re-measured worst cell, stays within its target + 3 Monte-Carlo SE
# (upper bounds: false better/worse, false equivalent; lower bounds: coverage, power, seed-runs saved, no power loss).
def test_every_cell_of_the_quick_grid_meets_its_target_within_monte_carlo_error(quick_report):
    judged = [p for p in quick_report.properties if p.bound is not None]
    assert len(judged) == 11
    failures = [(p.name, c.label, c.rate) for p in judged for c in (*p.cells, p.confirmed) if beyond_target(p, c) >= 3]
    assert not failures
    assert all(p.status != "NOT MET" for p in judged)
    names = " | ".join(p.name for p in judged)
    for what in ("family-wise", "comparison intervals", "summarize_arms", "factorial", "false equivalent",
                 "false better of B", "power: better", "power: equivalent", "adaptive stopping", "seed-runs saved",
                 "large effect"):
        assert what in names


# The worst cell is measured again on fresh replications: same cell, CONFIRM_FACTOR x the replications.
def test_the_worst_cell_of_each_judged_property_is_re_measured(quick_report):
    for p in quick_report.properties:
        if p.bound is None:
            assert p.confirmed is None and p.status == "reported"
        else:
            assert p.confirmed.key == p.worst.key and p.confirmed.rate.reps == CONFIRM_FACTOR * REPS


def test_the_quick_grid_covers_the_named_cells(quick_report):
    fwer = quick_report.properties[0]
    assert {(c.key.m, c.key.n, c.key.dist) for c in fwer.cells} == {(m, n, d) for m in (1, 3, 8) for n in (3, 5, 10, 30)
                                                                    for d in ("normal", "t3")}
    assert all(c.rate.reps == REPS for p in quick_report.properties for c in p.cells)


# The harness can fail: the same measurement of an unadjusted rule (each of 8 comparisons at 5%) is far off.
def test_the_measurement_flags_a_rule_without_the_family_adjustment():
    values = arm_values(np.random.default_rng(0), "normal", 20, (0.0,) * 9, 2000)
    wrong = np.isin(decide_family(values, rope=0.0, alpha=0.05 * 8)["verdict"], ("better", "worse")).any(axis=0)
    prop = Property("fixed", "unadjusted", "max", 0.05, (Cell(Key(8, 20, "normal"), Rate.of(wrong)),))
    assert prop.worst.rate.value > 0.2 and prop.status == "NOT MET"


def test_status_is_met_inside_the_target_within_mc_error_just_beyond_it_and_not_met_far_beyond():
    def status(value, se, bound="max"):
        return Property("fixed", "x", bound, 0.05 if bound == "max" else 0.94,
                        (Cell(Key(1, 3, "normal"), Rate(value, se, 100)),)).status
    assert status(0.049, 0.01) == "met"
    assert status(0.06, 0.01) == "within MC error"
    assert status(0.05 + (MC_SIGMAS + 0.5) * 0.01, 0.01) == "NOT MET"
    assert status(0.95, 0.01, "min") == "met" and status(0.93, 0.01, "min") == "within MC error"
    assert status(0.90, 0.01, "min") == "NOT MET"


# The vectorised sequential simulation is what plan_seeds + compare_arms(sequential=True) do, round by round.
def test_simulate_sequential_drives_the_design_as_plan_seeds_does():
    effects = (0.0, 3.0, 1.5, 0.0, 0.4)
    arms = ["A", "B", "C", "D", "E"]
    values = arm_values(np.random.default_rng(4), "t3", DESIGN.max_seeds, effects, 6)  # (30, 5, 6)
    run = simulate_sequential(values, rope=1.0)
    kw = {"baseline": "A", "direction": "maximize", "rope": 1.0, "first_round": DESIGN.first_round,
          "step": DESIGN.step, "max_seeds": DESIGN.max_seeds}
    for r in range(values.shape[2]):
        df = pd.DataFrame(columns=["arm", "seed", "value", "state"])
        ran = dict.fromkeys(arms, 0)
        while need := plan_seeds(df, arms=arms[1:], **kw):
            new = [{"arm": a, "seed": ran[a] + i, "value": values[ran[a] + i, arms.index(a), r], "state": "complete"}
                   for a, k in need.items() for i in range(k)]
            for a, k in need.items():
                ran[a] += k
            df = pd.concat([df, pd.DataFrame(new)], ignore_index=True) if len(df) else pd.DataFrame(new)
        final = compare_arms(df, sequential=True, **kw).set_index("arm")
        assert [ran[a] for a in arms[1:]] == run.stop[:, r].tolist()
        assert ran["A"] == run.stop[:, r].max() and sum(ran.values()) == run.runs[r]
        assert final.loc[arms[1:], "verdict"].tolist() == run.verdict[:, r].tolist()
    assert set(run.verdict.ravel()) >= {"better", "equivalent"}
    assert run.stop.min() == DESIGN.first_round and run.stop.max() > DESIGN.first_round


def test_bench_stats_prints_both_designs_and_the_seed_runs(capsys):
    assert main(["bench", "stats", "--quick", "--reps", "40"]) == 0
    out = capsys.readouterr().out
    assert "fixed design" in out and "adaptive design" in out and "mixed family, adaptive vs fixed 30 per arm" in out
    assert re.search(r"normal +seed-runs \d+\.\d ± \d+\.\d per family vs 120 \(4 arms x 30\): \d+\.\d% fewer", out)
    assert "40 replications per cell" in out and "effect sizes (sd of the paired differences):" in out
    assert re.search(r"family-wise false better/worse .* m=\d n=\d+ (normal|t3) +\d+\.\d\d% ± \d+\.\d\d%", out)
    assert main(["bench", "stats", "--quick", "--reps", "40", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reps"] == 40 and data["quick"] is True
    assert {p["status"] for p in data["properties"]} <= {"met", "within MC error", "NOT MET", "reported"}
    assert all("worst" in p and "label" in p["worst"] for p in data["properties"])


def test_bench_stats_rejects_bad_reps_in_one_line_and_its_help_names_the_defaults(capsys):
    assert main(["bench", "stats", "--reps", "1"]) == 2
    assert capsys.readouterr().err.strip() == "armin: error: --reps must be >= 2, got 1"
    with pytest.raises(SystemExit):
        main(["bench", "stats", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {DEFAULT_REPS}, or {QUICK_REPS} with --quick" in text
