"""Write a study's report: `index.html` (self-contained), `report.md`, CSV tables, figures as PNG and SVG."""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from armin.reporting import figures
from armin.reporting.ablation import SOURCES_OF_VARIATION, ablation_tables
from armin.reporting.data import StudyData, load_study
from armin.reporting.search import search_tables


@dataclass
class Section:
    title: str
    text: str = ""  # one paragraph, plain text
    table: pd.DataFrame | None = None
    csv: str | None = None  # file name of the table's CSV
    figure: figures.Figure | None = None


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def display(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda col: col.map(fmt))


def ablation_report(data: StudyData, out: Path) -> Report:
    t = ablation_tables(data)
    spec, metric = data.spec, data.metric
    direction = "higher" if data.higher_is_better else "lower"
    figs = out / "figures"
    r = Report(f"Ablation {data.name}", f"{data.goal} Primary metric: {metric} ({direction} is better), ROPE "
                                        f"±{spec['rope']:g}; baseline arm {t.baseline!r}; {len(spec['seeds'])} seeds.")
    arms = t.arms.rename(columns={"ci_low": "ci95_low", "ci_high": "ci95_high"})
    r.sections.append(Section("Arms", f"Final {metric} per arm over completed seeds: mean, median and 95% CI of the "
                                      f"mean (percentile bootstrap over seeds from 10 seeds, Student-t below); failed and diverged runs are counted, not dropped "
                                      f"(diverged runs have no final value and are excluded from the statistics; "
                                      f"'attempts' includes retries).", arms, "arms.csv"))
    cols = ["arm", "n_pairs", "mean_diff", "ci_low", "ci_high", "wilcoxon_p", "p_holm", "t_p", "t_appropriate",
            "hedges_g", "p_better", "verdict", "seeds_to_settle", "notes"]
    comp = t.comparisons[cols] if not t.comparisons.empty else t.comparisons
    r.sections.append(Section(
        "Comparisons with the baseline (paired by seed)",
        f"Difference = arm − baseline in {metric}, over seeds where both finished. CI: paired, over seeds "
        f"(percentile bootstrap from 10 pairs, Student-t below, where a bootstrap undercovers). p: two-sided Wilcoxon signed-rank (p_holm: Holm-adjusted across these comparisons); t_p: "
        f"paired t-test, to be read only where t_appropriate. hedges_g: paired standardized difference (d_z, "
        f"small-sample corrected). p_better: share of bootstrap resamples where the arm is better. Verdict: "
        f"'equivalent' if the CI lies inside the ROPE, 'better'/'worse' if it excludes 0 in that direction, "
        f"else 'inconclusive' (seeds_to_settle estimates the seeds that would settle it).",
        comp, "comparisons.csv",
        figures.comparison_forest(t.comparisons, t.baseline, metric, spec["rope"], data.higher_is_better, figs)))
    if t.main_effects is not None:
        r.sections.append(Section("Main effects", f"Effect of each factor level on {metric}: mean over seeds of the "
                                                  f"level's cell mean minus the grand mean, with a bootstrap CI over "
                                                  f"seeds (factorial arms only).", t.main_effects, "main_effects.csv"))
    if t.interactions is not None:
        r.sections.append(Section("Two-way interactions", "For 2x2 factors the contrast (a1b1 − a1b0) − (a0b1 − "
                                                          "a0b0); otherwise cell − row − column + grand mean; CI "
                                                          "over seeds.", t.interactions, "interactions.csv"))
    curve_metrics = [m for m in dict.fromkeys([metric, "eval_loss"]) if m in set(data.curves["metric"])]
    r.sections.append(Section("Learning curves", "", None, None,
                              figures.learning_curves(data.curves, curve_metrics, t.arm_order, figs)))
    r.sections.append(Section("Memory probes", "Final read-address entropy and slot usage per arm (memory arms).",
                              t.probes, "probes.csv", figures.probes(data.final, t.arm_order, figs)))
    r.sections.append(Section(
        "Cost beside quality",
        "Parameters, time per training step, peak memory (CPU: peak RSS of the worker process; GPU: peak "
        "allocated) and wall time per run, means over seeds. speed_ratio: the arm's time per step over the "
        "baseline's, geometric mean over paired seeds with a 95% CI; within 5% counts as the same speed.",
        t.costs, "costs.csv", figures.quality_vs_cost(t.arms, t.costs, metric, figs)))
    r.sections.append(Section("Sources of variation", SOURCES_OF_VARIATION))
    r.sections += provenance(data)
    return r


def search_report(data: StudyData, db_url: str, out: Path) -> Report:
    t = search_tables(data, db_url)
    metric = data.metric
    r = Report(f"Search {data.name}", f"{data.goal} Objective: {data.spec['objective']['direction']} {metric}.")
    r.sections.append(Section("Outcomes", "Attempts by state (pruned and failed trials are counted here, never "
                                          "dropped).", t.counts, "counts.csv"))
    r.sections.append(Section("Optimization history", "", None, None,
                              figures.optimization_history(data.final, metric, data.higher_is_better, out / "figures")))
    r.sections.append(Section("Best configurations", f"Mean final {metric} over each configuration's seeds.",
                              t.best, "best.csv"))
    r.sections.append(Section("Parameter importances", t.importance_note, t.importances, "importances.csv",
                              figures.importances(t.importances, out / "figures")))
    r.sections.append(Section("Sources of variation", "Each value is one training run (or the mean of a "
                                                      "configuration's seeds); trials differ in configuration and "
                                                      "seed at once, so a gap between two configurations includes "
                                                      "seed-to-seed noise unless seeds_per_config > 1."))
    r.sections += provenance(data)
    return r


def provenance(data: StudyData) -> list[Section]:
    hardware = data.attempts[["worker_host", "device"]].dropna().drop_duplicates()
    hw = "; ".join(f"{h} ({d})" for h, d in hardware.itertuples(index=False)) or "not recorded"
    commit = f"{data.git_commit}{' (with uncommitted changes)' if data.git_dirty else ''}" if data.git_commit \
        else "not a git checkout"
    seeds = data.spec.get("seeds") or sorted(data.final["seed"].unique().tolist())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(data.versions.items()))
    sources = ", ".join(sorted(data.attempts["data_source"].dropna().unique())) or "not recorded"
    if "sample" in sources:
        sources += " (a small sample shipped with a package, not the full data set)"
    facts = pd.DataFrame([
        ("command", data.command or "unknown"),
        ("report command", " ".join(["armin", *map(shlex.quote, sys.argv[1:])])),
        ("data", sources), ("git commit", commit), ("versions", versions), ("hardware", hw),
        ("seeds", ", ".join(map(str, seeds))), ("created", data.created_at), ("last updated", data.updated_at),
        ("status", data.status),
    ], columns=["item", "value"])
    return [Section("Provenance", "", facts, "provenance.csv"),
            Section("Spec", "The spec as written:\n\n" + data.spec_text)]


HTML = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ r.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
.verdict-better { color: #2a9d4b; } .verdict-worse { color: #c0392b; }
</style></head><body>
<h1>{{ r.title }}</h1><p>{{ r.subtitle }}</p>
{% for s in r.sections %}<section id="s{{ loop.index }}"><h2>{{ s.title }}</h2>
{% if s.title == "Spec" %}<pre>{{ s.text }}</pre>{% elif s.text %}<p>{{ s.text }}</p>{% endif %}
{% if s.table is not none %}{{ tables[loop.index0] }}{% if s.csv %}<p><a href="{{ s.csv }}">{{ s.csv }}</a></p>{% endif %}{% endif %}
{% if s.figure %}<figure><img alt="{{ s.figure.title }}" src="data:image/png;base64,{{ s.figure.png_base64 }}">
<figcaption>{{ s.figure.caption }} (<a href="figures/{{ s.figure.name }}.png">PNG</a>, <a href="figures/{{ s.figure.name }}.svg">SVG</a>)</figcaption></figure>{% endif %}
</section>{% endfor %}
</body></html>
""", autoescape=True)


def write(report: Report, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {report.title}", "", report.subtitle, ""]
    tables = []
    for s in report.sections:
        md += [f"## {s.title}", ""]
        if s.title == "Spec":
            md += ["```toml", s.text.split("\n\n", 1)[-1], "```", ""]
        elif s.text:
            md += [s.text, ""]
        if s.table is not None:
            if s.csv:
                s.table.to_csv(out / s.csv, index=False)
            shown = display(s.table)
            tables.append(jinja2.filters.Markup(shown.to_html(index=False, border=0, escape=True)))
            md += [shown.to_markdown(index=False) if not shown.empty else "(none)", ""]
            if s.csv:
                md += [f"[{s.csv}]({s.csv})", ""]
        else:
            tables.append("")
        if s.figure:
            md += [f"![{s.figure.title}](figures/{s.figure.name}.png)", "", f"*{s.figure.caption}* "
                   f"([SVG](figures/{s.figure.name}.svg))", ""]
    (out / "report.md").write_text("\n".join(md))
    index = out / "index.html"
    index.write_text(HTML.render(r=report, tables=tables))
    return index


def build_report(db: str | Path, name: str, out: str | Path) -> Path:
    """Generate the report of study `name` into directory `out`; returns the index.html path."""
    from armin.storage import Database

    out = Path(out)
    data = load_study(db, name)
    if data.kind == "ablation":
        report = ablation_report(data, out)
    else:
        report = search_report(data, Database.open(db, readonly=True).url, out)
    out.mkdir(parents=True, exist_ok=True)
    data.attempts.to_csv(out / "trials.csv", index=False)
    (out / "spec.json").write_text(json.dumps(data.spec, indent=2, default=str))
    return write(report, out)
