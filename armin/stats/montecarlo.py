"""Monte-Carlo error rates of the verdict rule on data of known truth (`armin bench stats`).

Every rate is measured with the engine's own code: `decide_batch` (the rule `compare_arms` and
`plan_seeds` apply one comparison at a time) with the Monte-Carlo replications as its columns
and `lazy=True`, `score_runs` (the scoring rule of `score`, a sample of tables also going through
`score` itself), `t_interval` (the interval of `summarize_arms`) and `effect_contrasts` (the
contrasts of `factorial_effects`). Each rate comes with its Monte-Carlo standard error.

Data. Per seed, an arm's value is its true effect plus noise, normal or t(3) (scaled to the same
sd), so that a paired difference (arm - baseline) has sd 1; effect sizes are in that sd. The m
comparisons of a family share the baseline's runs, as in `compare_arms`. Values are "higher is
better" (the improvement scale), except in the two outcome scenarios, which minimize bits.

Intervals are shift-equivariant (the interval of d - delta is that of d moved by -delta), so a
coverage cell decides the engine's differences or contrasts minus their true values (0 on null
families; the factorial's known Yates effects) and checks that the interval holds 0; the lazy
sign-flip test then stays off, as on null data.

The sequential design is simulated round by round as `plan_seeds` drives it: every comparison
is decided at each look of `DESIGN` until it settles (stops at its first non-"inconclusive"
verdict), its arm runs that many seeds and the baseline as many as its longest comparison.

Judging. A property is measured on every cell of its grid; the worst cell (largest rate for an
upper bound, smallest for a lower one) is picked, which favours cells that drew high (or low)
by chance, so that cell is measured again on CONFIRM_FACTOR times as many fresh replications,
and the property is judged on that re-measure: met inside the target, "within MC error" beyond
it by less than MC_SIGMAS standard errors, else NOT MET.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from armin.stats.compare import score, score_runs
from armin.stats.design import SequentialDesign
from armin.stats.factorial import effect_contrasts
from armin.stats.rule import DEFAULT_ALPHA, Level, decide_batch, t_interval
from armin.stats.summary import SUMMARY_CONFIDENCE

ALPHA = DEFAULT_ALPHA
DISTRIBUTIONS = ("normal", "t3")  # noise of every arm's values: normal, or Student t with 3 df scaled to the same sd
SCENARIOS = (*DISTRIBUTIONS, "solve/no-solve", "failures")  # the data of a cell
FAMILY_SIZES = tuple(range(1, 9))  # m: comparisons against one baseline
PAIR_COUNTS = tuple(range(3, 31))  # n: paired seeds of a fixed design
QUICK_FAMILY_SIZES = (1, 3, 8)
QUICK_PAIR_COUNTS = (3, 5, 10, 30)
DESIGN = SequentialDesign(first_round=10, step=5, max_seeds=30)
ADAPTIVE_N = f"<={DESIGN.max_seeds}"  # the n of an adaptive cell: up to max_seeds pairs
ADAPTIVE_FAMILY_SIZES = (1, 3, 8)
ADAPTIVE_ROPES = (0.0, 1.0)  # ROPE 0: only a (false) difference stops a null comparison, the most looks
DEFAULT_REPS = 10_000  # replications per cell (the CLI help names it)
QUICK_REPS = 400
CONFIRM_FACTOR = 10  # the worst cell of a property is measured again on this many times the replications
MC_SIGMAS = 3.0  # a rate beyond its target by this many Monte-Carlo SE or more is "NOT MET"
SCORE_CHECKS = 5  # tables per cell of the failure scenario that also go through `score` (must agree exactly)

ARM_SD = 1.0 / math.sqrt(2.0)  # sd of one arm's noise: a paired difference of two arms has sd 1

# targets
FWER_MAX = 0.05
COVERAGE_MIN = 0.94
FALSE_EQUIVALENT_MAX = 0.05
FALSE_BETTER_MAX = 0.05
POWER_BETTER_MIN = 0.80
POWER_EQUIVALENT_MIN = 0.50
SAVED_MIN = 0.30  # share of seed-runs the adaptive design saves against max_seeds per arm
NO_LOSS = 0.0  # power on the large effect, adaptive minus fixed

# scenarios (effects in sd of the paired differences)
POWER_EFFECT, POWER_M, POWER_N = 2.0, 3, 10
EQUIVALENT_ROPE, EQUIVALENT_M, EQUIVALENT_N = 1.0, 3, 20
MIXED_EFFECTS = (3.0, 1.5, 0.0)  # large, medium, null: the family of the adaptive design
MIXED_ARMS = ("large", "medium", "null")
MIXED_ROPE = 1.0
SOLVE_LOSS_BITS, SOLVE_LOSS_SHARE, SOLVE_ROPE = 15.0, 0.4, 0.5  # bits an arm loses on a share of seeds
FAIL_SHARE = 0.4  # both arms fail on this share of seeds (each run independently)
FAIL_VALUE, FAIL_SD = 15.0, 1.0  # arm A's failures converge badly: value ~ N(15, 1)
SUCCESS_MEAN, SUCCESS_SD = 0.1, 0.05  # successes of both arms: value ~ N(0.1, 0.05)
FAIL_ROPE = 0.5
FACTORIAL_ORDER = {"a": [0, 1], "b": [0, 1]}  # a 2 x 2 design, level 0 the reference
FACTORIAL_MEANS = np.array([[0.0, 1.0], [0.5, 2.5]])  # true cell means, (L_a, L_b)
# Its true effects on the Yates scale, by hand: main a = (0.5 + 2.5) / 2 - (0 + 1) / 2,
# main b = (1 + 2.5) / 2 - (0 + 0.5) / 2, a x b = ((2.5 - 1) - (0.5 - 0)) / 2.
FACTORIAL_TRUTH = (1.0, 1.5, 0.5)

Bound = Literal["max", "min"]
Design = Literal["fixed", "adaptive"]


@dataclass(frozen=True)
class Rate:
    """A Monte-Carlo estimate: the mean over replications and its standard error."""

    value: float
    se: float
    reps: int

    @classmethod
    def of(cls, per_rep: np.ndarray) -> Rate:
        x = np.asarray(per_rep, dtype=np.float64)
        return cls(float(x.mean()), float(x.std() / math.sqrt(x.size)), int(x.size))


@dataclass(frozen=True)
class Key:
    """A cell: family size m (None where there is no family), pairs n, data, and the ROPE where it varies."""

    m: int | None
    n: int | str
    dist: str
    rope: float | None = None

    @property
    def label(self) -> str:
        parts = [f"m={self.m}" if self.m is not None else "", f"n={self.n}" if isinstance(self.n, int) else f"n{self.n}",
                 self.dist, f"ROPE {self.rope:g}" if self.rope is not None else ""]
        return " ".join(p for p in parts if p)

    def entropy(self) -> list[int]:
        """The cell's part of its random stream: its numbers do not depend on which other cells run."""
        return [self.m or 0, self.n if isinstance(self.n, int) else 0, SCENARIOS.index(self.dist),
                round(1000 * (self.rope or 0.0))]


@dataclass(frozen=True)
class Cell:
    key: Key
    rate: Rate

    @property
    def label(self) -> str:
        return self.key.label


@dataclass(frozen=True)
class Property:
    """One row of the table: a rate on every cell, judged at the worst cell re-measured (`confirmed`)."""

    design: Design
    name: str
    bound: Bound | None  # None: reported, no target
    target: float | None
    cells: tuple[Cell, ...]
    confirmed: Cell | None = None  # the worst cell on CONFIRM_FACTOR x fresh replications

    @property
    def worst(self) -> Cell:
        pick = min if self.bound == "min" else max
        return pick(self.cells, key=lambda c: c.rate.value)

    @property
    def judged(self) -> Cell:
        return self.confirmed or self.worst

    @property
    def status(self) -> str:
        """met: inside the target; within MC error: beyond it by less than MC_SIGMAS SE; else NOT MET."""
        if self.bound is None:
            return "reported"
        r = self.judged.rate
        beyond = r.value - self.target if self.bound == "max" else self.target - r.value
        if beyond <= 0:
            return "met"
        return "within MC error" if beyond < MC_SIGMAS * r.se else "NOT MET"


@dataclass(frozen=True)
class Report:
    reps: int
    quick: bool
    seed: int
    seconds: float
    properties: tuple[Property, ...]
    mixed: dict = field(default_factory=dict)  # per distribution: seed-runs, stops and verdict rates of the mixed family


# -- data of known truth ------------------------------------------------------------------------------------------------

def noise(rng: np.random.Generator, dist: str, shape: tuple[int, ...], sd: float) -> np.ndarray:
    """Noise of sd `sd`: normal, or t(3) (whose sd is sqrt(3)) scaled to it."""
    if dist == "normal":
        return rng.normal(0.0, sd, shape)
    if dist == "t3":
        return rng.standard_t(3, shape) * (sd / math.sqrt(3.0))
    raise ValueError(f"`dist` must be one of {list(DISTRIBUTIONS)}, but got ({dist=}).")


def arm_values(rng: np.random.Generator, dist: str, n: int, effects: tuple[float, ...], reps: int) -> np.ndarray:
    """(n seeds, arms, reps) values; arm 0 is the baseline, effects[j] the true mean of arm j."""
    return np.asarray(effects, dtype=np.float64)[None, :, None] + noise(rng, dist, (n, len(effects), reps), ARM_SD)


def failure_scenario(rng: np.random.Generator, n: int, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """(value, complete), each (n, 2, reps): arm 0 (A, the baseline) and arm 1 (B) fail on FAIL_SHARE of
    their runs; A's failures complete at ~N(15, 1), B's diverge (NaN); successes ~N(0.1, 0.05)."""
    fail = rng.random((n, 2, reps)) < FAIL_SHARE
    value = rng.normal(SUCCESS_MEAN, SUCCESS_SD, (n, 2, reps))
    value[:, 0][fail[:, 0]] = rng.normal(FAIL_VALUE, FAIL_SD, int(fail[:, 0].sum()))
    value[:, 1][fail[:, 1]] = np.nan
    complete = ~(fail & (np.arange(2) == 1)[None, :, None])
    return value, complete


# -- the engine on replications -----------------------------------------------------------------------------------------

def decide_family(values: np.ndarray, *, rope: float, alpha: float = ALPHA, looks: int = 1) -> dict[str, np.ndarray]:
    """`decide_batch` on every comparison of every replication: values (n, m + 1, reps) -> (m, reps) arrays.

    The improvements are arm - baseline per seed (values are higher-is-better), arm 0 the baseline.
    """
    n, arms, reps = values.shape
    m = arms - 1
    d = (values[:, 1:, :] - values[:, :1, :]).reshape(n, m * reps)  # (n, m reps), comparison-major
    out = decide_batch(d, rope=rope, level=Level(alpha=alpha, m=m, looks=looks), lazy=True)
    return {k: v.reshape(m, reps) for k, v in out.items()}


@dataclass(frozen=True)
class Sequential:
    verdict: np.ndarray  # (m, reps): the verdict at the look that stopped the comparison
    stop: np.ndarray  # (m, reps): pairs at that look (= the arm's seed-runs)
    runs: np.ndarray  # (reps,): seed-runs of the family, baseline included


def simulate_sequential(values: np.ndarray, *, rope: float, design: SequentialDesign = DESIGN,
                        alpha: float = ALPHA) -> Sequential:
    """Drive `design` as `plan_seeds` does on values (max_seeds, m + 1, reps), baseline first."""
    n_max, arms, reps = values.shape
    if n_max < design.max_seeds:
        raise ValueError(f"`values` needs {design.max_seeds} seeds, but has {n_max}.")
    m = arms - 1
    level = Level(alpha=alpha, m=m, looks=design.looks)
    verdict = np.full(m * reps, "inconclusive", dtype=object)
    stop = np.zeros(m * reps, dtype=np.int64)
    unsettled = np.ones(m * reps, dtype=bool)
    for n in design.schedule:
        todo = np.flatnonzero(unsettled)
        if not todo.size:
            break
        d = (values[:n, 1:, :] - values[:n, :1, :]).reshape(n, m * reps)[:, todo]
        v = decide_batch(d, rope=rope, level=level, lazy=True)["verdict"]
        verdict[todo], stop[todo] = v, n
        unsettled[todo] = v == "inconclusive"
    stop = stop.reshape(m, reps)
    return Sequential(verdict=verdict.reshape(m, reps).astype(str), stop=stop, runs=stop.sum(axis=0) + stop.max(axis=0))


def _check_score(value: np.ndarray, complete: np.ndarray, scores: np.ndarray) -> None:
    """The first tables, through `score` itself, must score exactly as the batch did."""
    n = value.shape[0]
    for r in range(min(SCORE_CHECKS, value.shape[2])):
        df = pd.DataFrame({"arm": ["A"] * n + ["B"] * n, "seed": [*range(n)] * 2,
                           "value": np.concatenate([value[:, 0, r], value[:, 1, r]]),
                           "state": ["complete"] * n + np.where(complete[:, 1, r], "complete", "diverged").tolist()})
        wide = score(df, "minimize").wide
        if not np.array_equal(wide[["A", "B"]].to_numpy(), scores[:, :, r]):
            raise RuntimeError(f"score() and score_runs() disagree on a table of {n} seeds (replication {r}).")


# -- one cell: per-replication outcomes of every property measured on it ------------------------------------------------

Measured = dict[str, np.ndarray]  # name -> (reps,) per-replication values (0/1 for a rate)


def _null_family(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """A family of m null comparisons: any false better/worse; every interval holding the true 0."""
    out = decide_family(arm_values(rng, key.dist, key.n, (0.0,) * (key.m + 1), reps), rope=0.0)  # no ROPE needed
    covered = (out["ci_low"] <= 0.0) & (0.0 <= out["ci_high"])
    return {"fwer": np.isin(out["verdict"], ("better", "worse")).any(axis=0), "coverage": covered.all(axis=0)}


def _summary_interval(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """The per-arm interval of `summarize_arms` (its `t_interval` at SUMMARY_CONFIDENCE) holding the true mean 1."""
    low, high = t_interval(1.0 + noise(rng, key.dist, (key.n, reps), 1.0), SUMMARY_CONFIDENCE)
    return {"summary": (low <= 1.0) & (1.0 <= high)}


def _factorial(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """All three effect intervals of the 2 x 2 factorial holding their known Yates effects."""
    cells = FACTORIAL_MEANS[None, :, :, None] + noise(rng, key.dist, (key.n, 2, 2, reps), ARM_SD)  # (n, 2, 2, reps)
    contrasts = effect_contrasts(cells, FACTORIAL_ORDER)  # main a, main b, a x b; values (n, reps)
    d = np.concatenate([c[-1] - truth for c, truth in zip(contrasts, FACTORIAL_TRUTH, strict=True)], axis=1)
    out = decide_batch(d, rope=0.0, level=Level(alpha=ALPHA, m=len(contrasts)), lazy=True)
    covered = ((out["ci_low"] <= 0.0) & (0.0 <= out["ci_high"])).reshape(len(contrasts), reps)
    return {"factorial": covered.all(axis=0)}


def _solve(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """The baseline always solves (0 bits); the arm loses SOLVE_LOSS_BITS on SOLVE_LOSS_SHARE of seeds."""
    bits = np.zeros((key.n, 2, reps))
    bits[:, 1, :] = np.where(rng.random((key.n, reps)) < SOLVE_LOSS_SHARE, SOLVE_LOSS_BITS, 0.0)
    verdict = decide_family(-bits, rope=SOLVE_ROPE)["verdict"][0]  # minimize bits: improvement = -(arm - baseline)
    return {"false_equivalent": verdict == "equivalent"}


def _failures(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """B (its failures diverge) against A (its failures converge badly), scored as `score` does."""
    value, complete = failure_scenario(rng, key.n, reps)
    scores, _, _ = score_runs(value, complete, "minimize", axis=(0, 1))  # one table per replication
    _check_score(value, complete, scores)
    verdict = decide_family(-scores, rope=FAIL_ROPE)["verdict"][0]  # minimize: improvement = -(B - A)
    return {"false_better": verdict == "better", "false_worse": verdict == "worse"}


def _power_better(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    verdict = decide_family(arm_values(rng, key.dist, key.n, (0.0,) + (POWER_EFFECT,) * key.m, reps), rope=0.0)["verdict"]
    return {"power_better": (verdict == "better").mean(axis=0)}  # share of the m comparisons, per replication


def _power_equivalent(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    values = arm_values(rng, key.dist, key.n, (0.0,) * (key.m + 1), reps)
    return {"power_equivalent": (decide_family(values, rope=EQUIVALENT_ROPE)["verdict"] == "equivalent").mean(axis=0)}


def _adaptive_null(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    run = simulate_sequential(arm_values(rng, key.dist, DESIGN.max_seeds, (0.0,) * (key.m + 1), reps), rope=key.rope)
    return {"adaptive_fwer": np.isin(run.verdict, ("better", "worse")).any(axis=0)}


def _mixed(rng: np.random.Generator, key: Key, reps: int) -> Measured:
    """The mixed family, adaptive (as `plan_seeds` drives it) against the fixed design of max_seeds per arm."""
    values = arm_values(rng, key.dist, DESIGN.max_seeds, (0.0, *MIXED_EFFECTS), reps)
    run = simulate_sequential(values, rope=MIXED_ROPE)
    fixed = decide_family(values, rope=MIXED_ROPE)["verdict"]
    out = {"saved": 1.0 - run.runs / ((len(MIXED_EFFECTS) + 1) * DESIGN.max_seeds), "runs": run.runs}
    for j, (arm, hit) in enumerate(zip(MIXED_ARMS, ("better", "better", "equivalent"), strict=True)):
        adaptive, fixed_hit = run.verdict[j] == hit, fixed[j] == hit
        out |= {f"{arm}_adaptive": adaptive, f"{arm}_fixed": fixed_hit, f"{arm}_diff": adaptive.astype(float) - fixed_hit,
                f"{arm}_stop": run.stop[j]}
    return out


# -- the table ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """Cells measured by one function, and the properties read off its outcomes: (measured, name, bound, target)."""

    design: Design
    measure: Callable[[np.random.Generator, Key, int], Measured]
    keys: tuple[Key, ...]
    properties: tuple[tuple[str, str, Bound | None, float | None], ...]


def _span(values) -> str:
    values = list(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ",".join(map(str, values))


def groups(ms: tuple[int, ...], ns: tuple[int, ...]) -> tuple[Group, ...]:
    """Every property of `armin bench stats` on the grid m in `ms`, n in `ns` (fixed design)."""
    grid = f"m={_span(ms)}, n={_span(ns)}"
    mixed = f"({', '.join(f'{e:g}' for e in MIXED_EFFECTS)} sd; ROPE {MIXED_ROPE:g} sd)"
    fails = f"B's failures diverge, A's converge badly ({FAIL_SHARE:.0%} each, n={_span(ns)})"
    return (
        Group("fixed", _null_family, tuple(Key(m, n, d) for d in DISTRIBUTIONS for m in ms for n in ns),
              (("fwer", f"family-wise false better/worse ({grid})", "max", FWER_MAX),
               ("coverage", f"coverage: comparison intervals, simultaneous over m ({grid})", "min", COVERAGE_MIN))),
        Group("fixed", _summary_interval, tuple(Key(None, n, d) for d in DISTRIBUTIONS for n in ns),
              (("summary", f"coverage: per-arm {SUMMARY_CONFIDENCE:.0%} interval of summarize_arms (n={_span(ns)})",
                "min", COVERAGE_MIN),)),
        Group("fixed", _factorial, tuple(Key(len(FACTORIAL_TRUTH), n, d) for d in DISTRIBUTIONS for n in ns),
              (("factorial", f"coverage: 2x2 factorial effect intervals, simultaneous (n={_span(ns)})", "min",
                COVERAGE_MIN),)),
        Group("fixed", _solve, tuple(Key(1, n, "solve/no-solve") for n in ns),
              (("false_equivalent", f"false equivalent: arm loses {SOLVE_LOSS_BITS:g} bits on {SOLVE_LOSS_SHARE:.0%} "
                                    f"of seeds (ROPE {SOLVE_ROPE:g}, n={_span(ns)})", "max", FALSE_EQUIVALENT_MAX),)),
        Group("fixed", _failures, tuple(Key(1, n, "failures") for n in ns),
              (("false_better", f"false better of B: {fails}", "max", FALSE_BETTER_MAX),
               ("false_worse", f"false worse of B: {fails}", None, None))),
        Group("fixed", _power_better, tuple(Key(POWER_M, POWER_N, d) for d in DISTRIBUTIONS),
              (("power_better", f"power: better, true difference {POWER_EFFECT:g} sd in all {POWER_M} arms", "min",
                POWER_BETTER_MIN),)),
        Group("fixed", _power_equivalent, tuple(Key(EQUIVALENT_M, EQUIVALENT_N, d) for d in DISTRIBUTIONS),
              (("power_equivalent", f"power: equivalent, true difference 0, ROPE {EQUIVALENT_ROPE:g} sd", "min",
                POWER_EQUIVALENT_MIN),)),
        Group("adaptive", _adaptive_null, tuple(Key(m, ADAPTIVE_N, d, rope) for d in DISTRIBUTIONS
                                                for m in ADAPTIVE_FAMILY_SIZES for rope in ADAPTIVE_ROPES),
              (("adaptive_fwer", f"family-wise false better/worse, adaptive stopping (m={_span(ADAPTIVE_FAMILY_SIZES)}, "
                                 f"ROPE {' or '.join(f'{r:g}' for r in ADAPTIVE_ROPES)} sd)", "max", FWER_MAX),)),
        Group("adaptive", _mixed, tuple(Key(len(MIXED_EFFECTS), ADAPTIVE_N, d) for d in DISTRIBUTIONS),
              (("saved", f"seed-runs saved vs fixed {DESIGN.max_seeds} per arm, mixed family {mixed}", "min", SAVED_MIN),
               ("large_diff", f"power on the large effect ({MIXED_EFFECTS[0]:g} sd), adaptive - fixed", "min", NO_LOSS),
               ("medium_diff", f"power on the medium effect ({MIXED_EFFECTS[1]:g} sd), adaptive - fixed", None, None),
               ("null_diff", f"equivalent on the null arm ({MIXED_EFFECTS[2]:g} sd), adaptive - fixed", None, None))),
    )


def _measure(group: Group, group_index: int, key: Key, reps: int, seed: int, stage: int) -> Measured:
    return group.measure(np.random.default_rng([seed, group_index, stage, *key.entropy()]), key, reps)


def run_all(reps: int = DEFAULT_REPS, *, quick: bool = False, seed: int = 0,
            confirm: int = CONFIRM_FACTOR) -> Report:
    """Measure every property: the full grid, or with `quick` the cells m in {1, 3, 8}, n in {3, 5, 10, 30}.

    Each judged property's worst cell is measured again on `confirm` x `reps` fresh replications
    (in `confirm` batches of `reps`, so memory stays that of one cell).
    """
    if reps < 2 or confirm < 1:
        raise ValueError(f"`reps >= 2` and `confirm >= 1` must hold, but got ({reps=}, {confirm=}).")
    ms, ns = (QUICK_FAMILY_SIZES, QUICK_PAIR_COUNTS) if quick else (FAMILY_SIZES, PAIR_COUNTS)
    start = time.perf_counter()
    props, mixed = [], {}
    for gi, group in enumerate(groups(ms, ns)):
        rates = {key: {name: Rate.of(v) for name, v in _measure(group, gi, key, reps, seed, 0).items()}
                 for key in group.keys}
        again: dict[Key, Measured] = {}  # re-measured cells (two properties of a group may share their worst cell)
        for measured, name, bound, target in group.properties:
            prop = Property(group.design, name, bound, target, tuple(Cell(k, rates[k][measured]) for k in group.keys))
            if bound is not None:
                w = prop.worst.key
                if w not in again:
                    batches = [_measure(group, gi, w, reps, seed, 1 + i) for i in range(confirm)]
                    again[w] = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
                prop = replace(prop, confirmed=Cell(w, Rate.of(again[w][measured])))
            props.append(prop)
        if group.measure is _mixed:
            mixed = {key.dist: rates[key] for key in group.keys}
    return Report(reps=reps, quick=quick, seed=seed, seconds=time.perf_counter() - start, properties=tuple(props),
                  mixed=mixed)


# -- output -------------------------------------------------------------------------------------------------------------

def _fmt(rate: Rate) -> str:
    return f"{100 * rate.value:6.2f}% ± {100 * rate.se:.2f}%"


def _target(prop: Property) -> str:
    if prop.bound is None:
        return "-"
    return f"{'<=' if prop.bound == 'max' else '>='} {100 * prop.target:g}%"


def format_report(report: Report) -> str:
    """The table per design (property, worst cell, its rate and re-measure ± MC SE, target, status); the seed-runs."""
    confirm = max((p.confirmed.rate.reps // report.reps for p in report.properties if p.confirmed), default=0)
    lines = [f"armin bench stats: Monte-Carlo error rates of armin.stats (alpha {ALPHA:g}; {report.reps:,} replications "
             f"per cell, {confirm}x for the re-measure; seed {report.seed}; {'quick grid; ' if report.quick else ''}"
             f"{report.seconds:.0f} s)",
             "data: per seed, arm value = true effect + noise (normal, or t(3) scaled to the same sd); paired "
             "differences arm - baseline have sd 1 and effects are in that sd; the m arms of a family share one "
             "baseline."]
    width = max(len(p.name) for p in report.properties)
    for design, title in (("fixed", "fixed design: one look at n pairs"),
                          ("adaptive", f"adaptive design: SequentialDesign(first_round={DESIGN.first_round}, "
                                       f"step={DESIGN.step}, max_seeds={DESIGN.max_seeds}), K = {DESIGN.looks} looks "
                                       f"at {', '.join(map(str, DESIGN.schedule))} pairs")):
        lines += ["", title, f"  {'property':<{width}}  cells  {'worst cell':<24}  {'rate ± MC SE':<17}  "
                             f"{'re-measured':<17}  {'target':<7}  status"]
        for p in (p for p in report.properties if p.design == design):
            again = _fmt(p.confirmed.rate) if p.confirmed else "-"
            lines.append(f"  {p.name:<{width}}  {len(p.cells):>5}  {p.worst.label:<24}  {_fmt(p.worst.rate):<17}  "
                         f"{again:<17}  {_target(p):<7}  {p.status}")
    fixed_runs = (len(MIXED_EFFECTS) + 1) * DESIGN.max_seeds
    lines += ["", f"mixed family, adaptive vs fixed {DESIGN.max_seeds} per arm (m = {len(MIXED_EFFECTS)}: large "
                  f"{MIXED_EFFECTS[0]:g} sd, medium {MIXED_EFFECTS[1]:g} sd, null {MIXED_EFFECTS[2]:g}; ROPE "
                  f"{MIXED_ROPE:g} sd)"]
    for dist, r in report.mixed.items():
        a, pct = r["runs"], lambda key: f"{100 * r[key].value:.1f}%"
        stops = ", ".join(f"{r[arm + '_stop'].value:.1f}" for arm in MIXED_ARMS)
        lines += [f"  {dist:<6}  seed-runs {a.value:.1f} ± {a.se:.1f} per family vs {fixed_runs} "
                  f"({len(MIXED_EFFECTS) + 1} arms x {DESIGN.max_seeds}): {100 * (1 - a.value / fixed_runs):.1f}% "
                  f"fewer; comparisons stop at {stops} pairs on average",
                  f"  {'':<6}  better on large {pct('large_adaptive')} vs {pct('large_fixed')}, on medium "
                  f"{pct('medium_adaptive')} vs {pct('medium_fixed')}; equivalent on null {pct('null_adaptive')} vs "
                  f"{pct('null_fixed')} (adaptive vs fixed)"]
    lines += ["",
              f"effect sizes (sd of the paired differences): power {POWER_EFFECT:g} sd (m={POWER_M}, n={POWER_N}); "
              f"equivalence 0 sd with ROPE {EQUIVALENT_ROPE:g} sd (m={EQUIVALENT_M}, n={EQUIVALENT_N}); mixed family "
              f"as above.",
              f"factorial 2x2: cell means {FACTORIAL_MEANS.tolist()}, true effects main a {FACTORIAL_TRUTH[0]:g}, "
              f"main b {FACTORIAL_TRUTH[1]:g}, a x b {FACTORIAL_TRUTH[2]:g} (Yates scale).",
              f"solve/no-solve: baseline 0 bits; the arm {SOLVE_LOSS_BITS:g} bits on {SOLVE_LOSS_SHARE:.0%} of seeds, "
              f"else 0 (minimize). failures: each run of A and B fails with probability {FAIL_SHARE:g}; A's "
              f"complete at N({FAIL_VALUE:g}, {FAIL_SD:g}), B's diverge (NaN, scored as the table's worst); "
              f"successes N({SUCCESS_MEAN:g}, {SUCCESS_SD:g}) (minimize).",
              "worst cell: the largest rate for an upper bound, the smallest for a lower one, picked from the scan and "
              "so biased toward the bound; re-measured: that cell on fresh replications, which the status judges.",
              f"status: met = inside the target; within MC error = beyond it by less than {MC_SIGMAS:g} MC SE; "
              f"NOT MET = by more."]
    return "\n".join(lines)


def report_dict(report: Report) -> dict:
    out = asdict(report)
    out["mixed"] = {dist: {name: asdict(rate) for name, rate in rates.items()} for dist, rates in report.mixed.items()}
    for p, d in zip(report.properties, out["properties"], strict=True):
        d.update(worst=asdict(p.worst) | {"label": p.worst.label}, status=p.status)
        d["cells"] = [asdict(c) | {"label": c.label} for c in p.cells]
    return out
