"""`armin bench model --spec SPEC`: the cost profile of an ablation's arms, printed side by side with ratios.

The same code the study driver runs after its trials (`armin.costs.profile`, `armin.costs.speed`),
here in this process and without Ray or a database: every arm's configuration (its first seed) on
the spec's device with a trial's threads, interleaved over paired rounds, then each arm's time per
step over the baseline's with its simultaneous interval and the report's speed verdict.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, replace
from pathlib import Path

from armin.costs.profile import Profile, profile_arms
from armin.costs.settings import Settings
from armin.costs.speed import compare_speed, speed_level
from armin.errors import ConfigError


def load_arms(path: Path, device: str | None):
    """(spec, arm name -> RunConfig) of an ablation spec; a search spec is one line saying why not."""
    from armin.spec.ablation import build_arm_run, parse_ablation
    from armin.spec.base import parse_toml, read_spec_text

    text = read_spec_text(path)
    data = parse_toml(text, str(path))
    if "search" in data or "space" in data:
        raise ConfigError(f"--spec {path}: a search spec has no arms; bench model profiles an ablation's arms "
                          f"(a search's best configurations are profiled after its trials, into its database)")
    spec = parse_ablation(text, str(path))
    runs = {a.name: build_arm_run(spec, a, spec.seeds[0]) for a in spec.arms}
    if device is not None:
        runs = {k: replace(r, train=replace(r.train, device=device)) for k, r in runs.items()}
    return spec, runs


def table(profile: Profile, baseline: str) -> list[dict]:
    """One row per arm: medians over rounds, static figures, and the speed comparison with the baseline."""
    samples = profile.samples()
    speed = compare_speed(samples.rename(columns={"round": "pair", "train_step_s": "seconds"}), baseline,
                          [a.arm for a in profile.arms]).set_index("arm")
    rows = []
    for a in profile.arms:
        s = speed.loc[a.arm]
        rows.append({"arm": a.arm, "baseline": a.arm == baseline, "n_params": a.n_params,
                     "gflops_per_step": a.flops_per_step / 1e9,
                     "peak_step_mib": a.peak_step_bytes / 2**20 if a.peak_step_bytes is not None else math.nan,
                     "train_ms_per_step": 1e3 * statistics.median(a.train_step_s),
                     "train_us_per_element": 1e6 * statistics.median(t / e for t, e in zip(a.train_step_s, a.elements)),
                     "infer_ms_per_batch": 1e3 * statistics.median(a.infer_s),
                     "rounds": len(a.train_step_s), **{k: s[k] for k in s.index}})
    return rows


def format_table(rows: list[dict], profile: Profile, baseline: str) -> str:
    level = speed_level([r["arm"] for r in rows], baseline)
    head = (f"{'arm':<22}{'params':>9}{'GFLOP/step':>12}{'peak MiB':>10}{'train ms':>10}{'us/elem':>9}"
            f"{'infer ms':>10}   {'time / baseline [' + f'{1 - level.each:.1%}' + ' CI]':<30}verdict")
    lines = [f"cost profile on {profile.device} ({profile.host}, {profile.threads} threads, {profile.clock}): "
             f"{rows[0]['rounds']} rounds x {profile.steps_per_round} steps per arm, interleaved, after "
             f"{profile.warmup_rounds} warm-up rounds; medians over rounds; baseline {baseline!r}", head]
    for r in rows:
        ratio = ("(baseline)" if r["baseline"] else
                 f"x{r['speed_ratio']:.3f} [{r['speed_ratio_low']:.3f}, {r['speed_ratio_high']:.3f}]")
        lines.append(f"{r['arm']:<22}{r['n_params']:>9,}{r['gflops_per_step']:>12.4f}{r['peak_step_mib']:>10.3f}"
                     f"{r['train_ms_per_step']:>10.3f}{r['train_us_per_element']:>9.3f}{r['infer_ms_per_batch']:>10.3f}"
                     f"   {ratio:<30}{r['speed_verdict']}")
    return "\n".join(lines)


def bench_spec(path: Path, settings: Settings, *, device: str | None = None, as_json: bool = False) -> dict:
    spec, runs = load_arms(path, device)
    if settings.threads is None:
        settings = replace(settings, threads=max(1, int(spec.resources.cpus)))  # a trial's threads
    profile = profile_arms(runs, settings)
    rows = table(profile, spec.baseline)
    out = {"spec": str(path), "baseline": spec.baseline, "device": profile.device, "host": profile.host,
           "threads": profile.threads, "clock": profile.clock, "steps_per_round": profile.steps_per_round, "rows": rows,
           "samples": [asdict(a) for a in profile.arms]}
    print(json.dumps(out, indent=2, default=float) if as_json else format_table(rows, profile, spec.baseline),
          flush=True)
    return out
