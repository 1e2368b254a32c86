"""Report figures (headless matplotlib, seaborn styling), each saved as PNG and SVG.

Curves and bands are aggregated with pandas first, so a study of 10,000 trials draws as fast as one
of ten.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from armin.model.config import MEMORY_PROBES  # noqa: E402

DPI = 110  # PNG resolution; SVGs are vector
VERDICT_COLORS = {"better": "#2a9d4b", "worse": "#c0392b", "equivalent": "#2471a3", "inconclusive": "#7f8c8d"}


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path
    png_base64: str  # embedded in the self-contained HTML


def _palette(arms: list[str]) -> dict[str, tuple]:
    return dict(zip(arms, sns.color_palette("colorblind", len(arms))))


def save(fig: plt.Figure, out: Path, name: str, title: str, caption: str) -> Figure:
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    png.write_bytes(buffer.getvalue())
    fig.savefig(svg, format="svg", bbox_inches="tight")
    plt.close(fig)
    return Figure(name, title, caption, png, svg, base64.b64encode(buffer.getvalue()).decode())


def learning_curves(curves: pd.DataFrame, metrics: list[str], arms: list[str], out: Path) -> Figure | None:
    """Mean over seeds per arm, with the band spanning the seeds (min to max)."""
    data = curves[curves["metric"].isin(metrics) & curves["arm"].isin(arms)]
    if data.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    colors = _palette(arms)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    agg = data.groupby(["metric", "arm", "step"])["value"].agg(["mean", "min", "max", "count"]).reset_index()
    for ax, metric in zip(axes[0], metrics):
        for arm in arms:
            a = agg[(agg["metric"] == metric) & (agg["arm"] == arm)]
            if a.empty:
                continue
            ax.plot(a["step"], a["mean"], color=colors[arm], label=arm, lw=1.6)
            ax.fill_between(a["step"], a["min"], a["max"], color=colors[arm], alpha=0.18, lw=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
    axes[0][-1].legend(fontsize=7, loc="best")
    return save(fig, out, "learning_curves", "Learning curves",
                "Mean over seeds per arm; the band spans the seeds (min to max).")


def _finite_span(lows: np.ndarray, highs: np.ndarray, rope: float) -> tuple[float, float]:
    """Where to draw unbounded interval ends: a little beyond every finite end and the ROPE."""
    ends = np.concatenate([lows, highs, [-rope, rope, 0.0]])
    ends = ends[np.isfinite(ends)]
    lo, hi = float(ends.min()), float(ends.max())
    pad = 0.15 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def comparison_forest(comparisons: pd.DataFrame, baseline: str, metric: str, rope: float,
                      higher_is_better: bool, level: str, out: Path) -> Figure | None:
    """Each arm's mean improvement over the baseline with its simultaneous paired interval, against the ROPE."""
    shown = comparisons[comparisons["n_pairs"] >= 2]
    if shown.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    sign = 1.0 if higher_is_better else -1.0
    lows = np.minimum(sign * shown["ci_low"], sign * shown["ci_high"]).to_numpy(float)
    highs = np.maximum(sign * shown["ci_low"], sign * shown["ci_high"]).to_numpy(float)
    left, right = _finite_span(lows, highs, rope)
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(shown) + 1.4))
    ax.axvspan(-rope, rope, color="#d6eaf8", label=f"ROPE ±{rope:g}")
    ax.axvline(0, color="black", lw=0.8)
    for i, (row, lo, hi) in enumerate(zip(shown.itertuples(), lows, highs)):
        color = VERDICT_COLORS[row.verdict]
        ax.plot([max(lo, left), min(hi, right)], [i, i], color=color, lw=2.2,
                ls="-" if np.isfinite(lo) and np.isfinite(hi) else "--")
        ax.plot(sign * row.mean_diff, i, "o", color=color)
        ax.annotate(row.verdict, (min(hi, right), i), xytext=(6, -3), textcoords="offset points", fontsize=7,
                    color=color)
    ax.set_xlim(left, right)
    ax.set_yticks(range(len(shown)), shown["arm"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"improvement in {metric} over {baseline!r} (positive = better)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    return save(fig, out, "comparisons", "Paired differences from the baseline",
                f"Mean improvement over the baseline (positive = better) with its simultaneous {level} paired t "
                f"interval over seeds (dashed: unbounded); the shaded band is the region of practical equivalence.")


def sequential_trace(trace: pd.DataFrame, baseline: str, metric: str, rope: float, max_seeds: int,
                     out: Path) -> Figure | None:
    """Per comparison, its interval at every look against the paired seeds run, up to the look that stopped it."""
    if trace.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    arms = list(dict.fromkeys(trace["arm"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(3.4 * len(arms) + 0.6, 3.2), squeeze=False)
    for ax, arm in zip(axes[0], arms):  # each on its own scale: one large effect must not flatten the others
        mine = trace[trace["arm"] == arm]
        left, right = _finite_span(mine["ci_low"].to_numpy(float), mine["ci_high"].to_numpy(float), rope)
        ax.axhspan(-rope, rope, color="#d6eaf8")
        ax.axhline(0, color="black", lw=0.8)
        for row in mine.itertuples():
            color = VERDICT_COLORS[row.verdict]
            ax.plot([row.n_pairs] * 2, [max(row.ci_low, left), min(row.ci_high, right)], color=color, lw=2.2)
            ax.plot(row.n_pairs, row.mean_diff, "o", color=color)
        ax.set_xlim(0, max_seeds + 1)
        ax.set_ylim(left, right)
        ax.set_title(f"{arm}\n{mine['stop'].iloc[-1]}", fontsize=7)
        ax.set_xlabel("paired seeds")
    axes[0][0].set_ylabel(f"{metric}: arm − {baseline!r}")
    fig.subplots_adjust(wspace=0.3)
    seen = [v for v in VERDICT_COLORS if v in set(trace["verdict"])]
    axes[0][-1].legend(handles=[plt.Line2D([], [], color=VERDICT_COLORS[v], marker="o", lw=2, label=v) for v in seen],
                       fontsize=7, loc="best")
    return save(fig, out, "sequential_trace", "Sequential trace",
                "Each comparison's mean difference (arm − baseline) and simultaneous interval at every look, "
                "coloured by the verdict at that look, against the paired seeds run; the band is the ROPE.")


def quality_vs_cost(arms: pd.DataFrame, costs: pd.DataFrame, metric: str, out: Path) -> Figure | None:
    merged = arms.merge(costs, on="arm")
    merged = merged[merged["time_per_step_ms"].notna() & merged["mean"].notna()]
    if merged.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    colors = _palette(list(arms["arm"]))
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for row in merged.itertuples():
        yerr = np.array([[row.mean - row.ci_low], [row.ci_high - row.mean]])
        yerr = None if np.isnan(yerr).any() else np.abs(yerr)
        ax.errorbar(row.time_per_step_ms, row.mean, yerr=yerr, fmt="o", color=colors[row.arm], capsize=3,
                    label=f"{row.arm} ({row.n_params:,} params)" if pd.notna(row.n_params) else row.arm)
    ax.set_xlabel("time per training step (ms)")
    ax.set_ylabel(f"final {metric}")
    ax.legend(fontsize=7, loc="best")
    return save(fig, out, "quality_vs_cost", "Quality versus cost",
                f"Final {metric} (mean and 95% CI over seeds) against time per training step; the legend gives "
                f"each arm's parameter count.")


def probes(final: pd.DataFrame, arms: list[str], out: Path) -> Figure | None:
    cols = [c for c in MEMORY_PROBES if c in final.columns]
    data = final[final["arm"].isin(arms) & (final["state"] == "COMPLETE")]
    if not cols or data[cols].notna().sum().sum() == 0:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    colors = _palette(arms)
    fig, axes = plt.subplots(1, len(cols), figsize=(5.0 * len(cols), 0.45 * len(arms) + 1.6), squeeze=False)
    agg = data.groupby("arm")[cols].agg(["mean", "min", "max"])
    for ax, col in zip(axes[0], cols):
        for i, arm in enumerate(arms):
            if arm not in agg.index or np.isnan(agg.loc[arm, (col, "mean")]):
                continue
            m, lo, hi = (agg.loc[arm, (col, k)] for k in ("mean", "min", "max"))
            ax.plot([lo, hi], [i, i], color=colors[arm], lw=2)
            ax.plot(m, i, "o", color=colors[arm])
        ax.set_yticks(range(len(arms)), arms, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel({"read_entropy": "read-address entropy (nats)", "slot_usage": "fraction of slots read"}[col])
    return save(fig, out, "memory_probes", "Memory probes",
                "At the last evaluation: entropy of the read-address distribution (0 = one certain slot) and the "
                "fraction of slots a sequence reads; mean over seeds, line from min to max.")


def optimization_history(final: pd.DataFrame, metric: str, higher_is_better: bool, out: Path) -> Figure | None:
    done = final[(final["state"] == "COMPLETE") & final["objective"].notna()].sort_values("trial")
    if done.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(done["trial"], done["objective"], "o", ms=3, alpha=0.6, label="trial")
    best = done["objective"].cummax() if higher_is_better else done["objective"].cummin()
    ax.plot(done["trial"], best, color="#c0392b", lw=1.6, label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return save(fig, out, "optimization_history", "Optimization history",
                f"Final {metric} of every completed trial in order, and the best so far.")


def importances(table: pd.DataFrame, out: Path) -> Figure | None:
    if table.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(6.0, 0.4 * len(table) + 1.2))
    sns.barplot(data=table, x="importance", y="parameter", ax=ax, color="#2471a3")
    return save(fig, out, "param_importances", "Parameter importances",
                "Optuna's importance evaluator over the completed trials (see the table for which evaluator).")
