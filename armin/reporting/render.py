"""Write a study's report: `index.html` (self-contained), `report.md`, CSV tables, figures as PNG and SVG."""

from __future__ import annotations

import json
import math
import numbers
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from armin.reporting import figures, latex, wording
from armin.reporting.ablation import ablation_tables
from armin.reporting.data import StudyData, load_study
from armin.reporting.search import search_tables
from armin.reporting.status import described_status
from armin.storage import TrialState

SUPERSCRIPTS = str.maketrans("0123456789,", "⁰¹²³⁴⁵⁶⁷⁸⁹˒")


@dataclass
class Section:
    title: str
    text: str = ""  # plain text; paragraphs separated by a blank line
    table: pd.DataFrame | None = None  # written whole to `csv`
    csv: str | None = None  # file name of the table's CSV
    figure: figures.Figure | None = None
    columns: list[str] | None = None  # the columns shown (HTML, Markdown, LaTeX); None: all of them
    notes: dict[int, list[str]] = field(default_factory=dict)  # row position -> footnotes, numbered below the table
    tex: bool = False  # also in report.tex
    inline: bool = True  # False: the table goes to its CSV only (one row per run: too long for the page)

    def shown(self) -> pd.DataFrame:
        return self.table if self.columns is None else self.table[[c for c in self.columns if c in self.table]]

    def footnotes(self) -> tuple[dict[int, list[int]], list[str]]:
        """Row position -> footnote numbers, and the footnotes in order (one number per distinct text)."""
        texts: list[str] = []
        marks: dict[int, list[int]] = {}
        for row in sorted(self.notes):
            for note in self.notes[row]:
                if note not in texts:
                    texts.append(note)
                marks.setdefault(row, []).append(texts.index(note) + 1)
        return marks, texts


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # the first block: one line per verdict


def fmt(value) -> str:
    """A table cell: integers as integers (thousands separated from 1,000), floats to 4 significant figures."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}" if abs(value) >= 1_000 else str(int(value))
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def display(df: pd.DataFrame, marks: dict[int, list[int]] | None = None) -> pd.DataFrame:
    """The table as text cells, footnote markers (superscript numbers) after the first cell of their rows."""
    shown = pd.DataFrame({c: [fmt(v) for v in df[c].tolist()] for c in df.columns}, index=range(len(df)),
                         columns=df.columns)
    for row, numbers_ in (marks or {}).items():
        first = shown.columns[0]
        shown.loc[row, first] = shown.loc[row, first] + ",".join(map(str, numbers_)).translate(SUPERSCRIPTS)
    return shown


def ablation_report(data: StudyData, out: Path) -> Report:
    t = ablation_tables(data)
    spec, metric = data.spec, data.metric
    direction = "higher" if data.higher_is_better else "lower"
    figs = out / "figures"
    seeds = t.runs.groupby("arm")["seed"].nunique()
    seeds_text = (f"{int(seeds.max())} seeds" if seeds.nunique() == 1 else
                  f"{int(seeds.min())}–{int(seeds.max())} seeds per arm") if len(seeds) else "no finished runs yet"
    design = "fixed design" if t.design is None else f"sequential design, at most {t.design.max_seeds} seeds per arm"
    r = Report(f"Ablation {data.name}", f"{data.goal} Primary metric: {metric} ({direction} is better), ROPE "
                                        f"±{t.rope:g}; baseline arm {t.baseline!r}; {seeds_text}; {design}.")
    r.summary = wording.summary(data, t)
    arms = t.arms.rename(columns={"ci_low": "ci95_low", "ci_high": "ci95_high"})
    r.sections.append(Section(
        "Arms", f"Final {metric} per arm, the latest attempt of each seed: counts of every outcome (complete, "
                f"diverged, failed for good, complete with a NaN value; 'attempts' includes retries), then the mean, "
                f"median, sd and a 95% Student-t interval of the mean over the finite values, this arm alone.",
        arms, "arms.csv", notes=wording.arm_notes(t, metric), tex=True))
    level = wording.percent(1 - t.level.each)
    looks = "" if t.design is None else f" and K = {t.level.looks} looks"
    comp_cols = ["arm", "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "p_equivalence", "verdict",
                 "n_diverged", "n_failed", "n_nan"]
    r.sections.append(Section(
        "Comparisons with the baseline (paired by seed)",
        f"mean_diff = arm − baseline in {metric}, over the seeds both ran, with its simultaneous {level} paired t "
        f"interval (ci_low, ci_high; over the m = {t.level.m} comparisons{looks}). "
        f"p_value: no difference, adjusted for the family; p_equivalence: a difference of at least the ROPE "
        f"±{t.rope:g}, adjusted likewise. The verdict follows from them (see Method); n_diverged, n_failed, n_nan "
        f"count the runs of both arms among the pairs that had no finite value and were scored as the worst.",
        t.comparisons, "comparisons.csv",
        figures.comparison_forest(t.comparisons, t.baseline, metric, t.rope, data.higher_is_better, level, figs),
        columns=comp_cols + ([] if t.design is None else ["stop"]), notes=wording.comparison_notes(t), tex=True))
    if t.trace is not None:
        r.sections.append(Section(
            "Sequential trace",
            f"Every look of every comparison: the interval (at the same simultaneous {level}) against the paired "
            f"seeds it used, up to the look that settled it; a footnote on each comparison's last look says why it "
            f"stopped.",
            t.trace, "trace.csv",
            figures.sequential_trace(t.trace, t.baseline, metric, t.rope, t.design.max_seeds, figs),
            columns=["arm", "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value", "p_equivalence", "verdict"],
            notes=wording.trace_notes(t)))
    if t.effects is not None:
        elevel = wording.percent(1 - t.effects_level.each)
        interaction = ("; a two-way interaction is half the difference of the simple effects, ((a1b1 − a0b1) − "
                       "(a1b0 − a0b0)) / 2, so in a 2×2 design every effect is the mean where its contrast is + minus "
                       "the mean where it is −" if len(t.factors) >= 2 else "")
        r.sections.append(Section(
            "Factor effects",
            f"One table, one scale: every effect is a difference of mean {metric} in its own units, per seed then "
            f"over seeds. A main effect is the level's mean minus the reference level's (the first listed), "
            f"averaged over the other factors{interaction}. Seeds with every factorial cell only (extra arms are not "
            f"in it), non-finite runs scored as the worst; simultaneous {elevel} t intervals over the m = "
            f"{t.effects_level.m} effects" + ("" if t.design is None else f" and the K = {t.effects_level.looks} "
            "looks of the sequential design (the effects are read at the look where every cell has its seeds)")
            + f", verdict by the comparison rule ('better': the level improves {metric}).",
            t.effects, "effects.csv",
            columns=["effect", "factor_a", "level_a", "factor_b", "level_b", "n_seeds", "estimate", "ci_low",
                     "ci_high", "p_value", "verdict"], tex=True))
    curve_metrics = [m for m in dict.fromkeys([metric, "eval_loss"]) if m in set(data.curves["metric"])]
    r.sections.append(Section("Learning curves", "", None, None,
                              figures.learning_curves(data.curves, curve_metrics, t.arm_order, figs)))
    r.sections.append(Section("Memory probes", "Final read-address entropy and slot usage per arm (memory arms).",
                              t.probes, "probes.csv", figures.probes(data.final, t.arm_order, figs)))
    r.sections.append(Section(
        "Cost beside quality",
        f"From the trials (means over seeds): parameters; time per training step after the first warm-up steps "
        f"(timed apart: warmup_s, which also loads the C++ loop's cache on a fresh worker); peak tensor memory of "
        f"one training step (CPU: the profiler's allocator events; GPU: max_memory_allocated; above what was "
        f"allocated before the step); wall time. From the cost profile (each arm's configuration measured alone, "
        f"warm, interleaved with the other arms in one process with a trial's resources): time per training "
        f"step, per sequence element (one time step of one sequence) and per inference batch, GFLOPs per "
        f"training step (matmuls, forward and backward, torch.utils.flop_counter on the eager loop) and peak step "
        f"memory; trial_vs_profile is the trials' time per step over the profile's, on the profile's clock (CPU time on one "
        f"thread: cpu_time_per_step_ms). speed_ratio: the arm's time "
        f"per step over the baseline's (the geometric mean ratio over the pairs of the {wording.speed_source_words(t)}) "
        f"with its simultaneous {wording.percent(1 - t.speed_level.each)} interval; speed_verdict by the comparison "
        f"rule on log time (within 5%: same speed).",
        t.costs, "costs.csv", figures.quality_vs_cost(t.arms, t.costs, metric, figs),
        columns=["arm", "n_params", "time_per_step_ms", "cpu_time_per_step_ms", "warmup_s", "peak_memory_mib", "wall_time_s",
                 "profile_step_ms", "profile_us_per_element", "profile_infer_ms", "gflops_per_step",
                 "profile_peak_mib", "trial_vs_profile", "speed_ratio", "speed_ratio_low", "speed_ratio_high",
                 "speed_p_value", "speed_verdict"],
        notes=wording.cost_notes(t), tex=True))
    r.sections.append(Section("Method", wording.method(data, t)))
    r.sections.append(Section("Sources of variation", wording.SOURCES_OF_VARIATION))
    r.sections.append(Section("Runs", "Every (arm, seed) the statistics used: the value (NaN when there is none), "
                                      "the state as the engine reads it, the database state of the latest attempt, "
                                      "and the score that entered the comparisons.",
                              t.runs, "runs.csv", inline=False))
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
    if not t.profile.empty:
        first = data.profile.iloc[0]
        r.sections.append(Section(
            "Cost profile of the best configurations",
            f"The best configurations ('config N': its config_id, best first) measured after the trials like an "
            f"ablation's arms (see the README's Costs): {int(data.profile.groupby('arm')['round'].nunique().min())} "
            f"paired rounds on {first['device']} ({first['clock']}, {int(first['threads'])} threads); speed_ratio: "
            f"time per training step over the best configuration's, with its simultaneous interval and the "
            f"comparison rule's verdict (within 5%: same speed).",
            t.profile, "cost_profile.csv"))
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
    ran = sorted(int(s) for s in data.final["seed"].unique()) if len(data.final) else []
    seeds = ", ".join(map(str, ran)) or "none yet"
    planned = data.spec.get("seeds") or []
    if data.spec.get("sequential") and planned:
        seeds += f" (run so far, of {len(planned)} candidate seeds)"
    versions = ", ".join(f"{k} {v}" for k, v in sorted(data.versions.items()))
    facts = pd.DataFrame([
        ("command", data.command or "unknown"),
        ("report command", " ".join(["armin", *map(shlex.quote, sys.argv[1:])])),
        ("data", wording.data_note(data)), ("git commit", commit), ("versions", versions), ("hardware", hw),
        ("seeds", seeds), ("created", data.created_at), ("last updated", data.updated_at),
        ("status", described_status(data.status, (((r.config_id, r.seed), TrialState[r.state], r.failure_reason
                                                    if isinstance(r.failure_reason, str) else None)
                                                   for r in data.attempts.sort_values("trial").itertuples()),
                                    data.resolved)),
    ], columns=["item", "value"])
    return [Section("Provenance", "", facts, "provenance.csv"), *spec_history(data),
            Section("Spec", f"The spec as written (version {current_version(data)}):\n\n" + data.spec_text)]


def current_version(data: StudyData) -> int:
    return int(data.spec_versions["version"].max()) if len(data.spec_versions) else 1


def spec_history(data: StudyData) -> list[Section]:
    """Every version of the spec, what changed, and how many attempts (and final runs) ran under each.

    Shown only when there is more than one: a `--force` or an added arm or seed never hides the spec
    earlier trials ran under.
    """
    v = data.spec_versions
    if len(v) < 2:
        return []
    attempts = data.attempts.groupby("spec_version").size()
    final = data.final.groupby("spec_version").size() if len(data.final) else pd.Series(dtype=int)
    table = pd.DataFrame({
        "version": v["version"].astype(int), "created": v["created_at"].astype(str),
        "forced": v["forced"].map(lambda f: "yes" if f else "no"),
        "changes": v["changes"].fillna("(first version)"),
        "attempts": v["version"].map(lambda n: int(attempts.get(n, 0))),
        "final_runs": v["version"].map(lambda n: int(final.get(n, 0)))})
    return [Section("Spec history", "Each time the study ran with a different resolved spec, a version was added "
                                    "(forced: its task, model, optimizer, training, seed or objective changed, by "
                                    "--force). Every attempt records the version it ran under; final_runs counts "
                                    "the runs the results use.", table, "spec_versions.csv")]


HTML = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ r.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure img { max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
#summary { background: #f4f8fb; border-left: 4px solid #2471a3; padding: 0.4em 1.2em; }
#summary li { margin: 0.3em 0; }
ol.notes { font-size: 0.8em; color: #444; margin-top: 0.2em; }
</style></head><body>
<h1>{{ r.title }}</h1><p>{{ r.subtitle }}</p>
{% if r.summary %}<section id="summary"><h2>Summary</h2><ul>{% for line in r.summary %}<li>{{ line }}</li>{% endfor %}</ul></section>{% endif %}
{% for s in r.sections %}<section id="s{{ loop.index }}"><h2>{{ s.title }}</h2>
{% if s.title == "Spec" %}<pre>{{ s.text }}</pre>{% elif s.text %}{% for p in s.text.split("\n\n") %}<p>{{ p }}</p>{% endfor %}{% endif %}
{% if s.table is not none %}{{ tables[loop.index0] }}{% if notes[loop.index0] %}<ol class="notes">{% for n in notes[loop.index0] %}<li>{{ n }}</li>{% endfor %}</ol>{% endif %}{% if s.csv %}<p><a href="{{ s.csv }}">{{ s.csv }}</a></p>{% endif %}{% endif %}
{% if s.figure %}<figure><img alt="{{ s.figure.title }}" src="data:image/png;base64,{{ s.figure.png_base64 }}">
<figcaption>{{ s.figure.caption }} (<a href="figures/{{ s.figure.name }}.png">PNG</a>, <a href="figures/{{ s.figure.name }}.svg">SVG</a>)</figcaption></figure>{% endif %}
</section>{% endfor %}
</body></html>
""", autoescape=True)


def write(report: Report, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {report.title}", "", report.subtitle, ""]
    if report.summary:
        md += ["## Summary", "", *(f"- {line}" for line in report.summary), ""]
    tables, notes, tex = [], [], []
    for s in report.sections:
        md += [f"## {s.title}", ""]
        if s.title == "Spec":
            intro, _, toml = s.text.partition("\n\n")
            md += [intro, "", "```toml", toml, "```", ""]
        elif s.text:
            md += [s.text, ""]
        if s.table is not None:
            if s.csv:
                s.table.to_csv(out / s.csv, index=False)
            marks, footnotes = s.footnotes()
            if s.inline:
                shown = display(s.shown(), marks)
                tables.append(jinja2.filters.Markup(shown.to_html(index=False, border=0, escape=True)))
                md += [shown.to_markdown(index=False) if not shown.empty else "(none)", ""]
                md += [*(f"{i}. {text}" for i, text in enumerate(footnotes, start=1)), ""] if footnotes else []
            else:
                tables.append("")
            notes.append(footnotes if s.inline else [])
            if s.csv:
                md += [f"[{s.csv}]({s.csv})", ""]
            if s.tex:
                tex.append(latex.tabular(s.title, s.shown(), marks, footnotes))
        else:
            tables.append("")
            notes.append([])
        if s.figure:
            md += [f"![{s.figure.title}](figures/{s.figure.name}.png)", "", f"*{s.figure.caption}* "
                   f"([SVG](figures/{s.figure.name}.svg))", ""]
    (out / "report.md").write_text("\n".join(md))
    if tex:
        (out / "report.tex").write_text(latex.document(report.title, tex))
    index = out / "index.html"
    index.write_text(HTML.render(r=report, tables=tables, notes=notes))
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
