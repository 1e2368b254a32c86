"""Ablation specs: a TOML file in `ablations/` declaring which components to toggle.

Every arm is trained on the same seeds under the same task, optimizer and budget; seed s of every
arm sees identical training batches, evaluation set and initial weights for every parameter the
arms share (armin.seeding), so arms are compared *paired by seed*. The format:

    name = "copy-ablation-quick"        # names the study in the database
    goal = "Does auto-addressing earn its keep on copy?"
    seed = 0                            # the replicates' run seeds derive from it

    [task]                              # as a study spec: any TaskConfig, chosen by name
    [model]                             # fixed model values (sizes...); factors override them per arm
    [optimizer]                         # identical for every arm
    [train]                             # identical for every arm

    [factors]                           # model paths and their levels: the full factorial is the arms
    "model.addressing" = ["hidden", "tardis"]
    "model.cell" = ["armin", "lstm"]

    [extra_arms.plain-lstm]             # optional arms outside the factorial, by name: model overrides
    "model.arch" = "lstm"
    "model.hidden_size" = 300

    [design]
    baseline = { "model.addressing" = "hidden", "model.cell" = "armin" }   # a factorial arm's levels,
                                        # or the name of an extra arm: baseline = "plain-lstm"
    seeds = 3                           # a count (seeds derived from `seed`), a list of run seeds, or
                                        # "adaptive": seeds on demand (below)
    arms = [ { "model.addressing" = "hidden", "model.cell" = "armin" } ]   # optional: a subset of the
                                        # factorial instead of all of it
    max_retries = 2                     # re-runs of a trial whose worker died unexplained (armin.storage.failures)
    allow_identical_arms = false        # true: arms may be the same model under two names (an A/A check of
                                        # the pipeline); else two arms equal by value are refused

    [objective]
    metric = "bits_error"               # at the last evaluation
    direction = "minimize"
    rope = 0.5                          # region of practical equivalence: |difference| < rope is "the same"

    [resources]                         # per trial
    cpus = 1
    gpus = 0
    memory_gb = 4                       # optional: GiB the trial may allocate (default: its CPU share of the node)

Seeds on demand (`seeds = "adaptive"`): the driver runs a first round of seeds on every arm, then
adds `step` seeds at a time only to the arms whose comparison with the baseline is not settled yet
(`armin.stats.plan_seeds`), until every comparison is settled or has `max_seeds` seeds:

    [design]
    seeds = "adaptive"
    max_seeds = 30                      # required: the most seeds any arm gets
    first_round = 10                    # optional (default 10): seeds of every arm before the first look
    step = 5                            # optional (default 5): seeds added per round to an unsettled comparison

The candidate run seeds are derived from `seed` exactly as a count of seeds is (the first n of them
are the seeds of `seeds = n`), and `AblationSpec.seeds` lists all `max_seeds` of them in run order;
every arm runs a prefix of that list, so each new run has its pair. `until_settled` turns a fixed
spec into an adaptive one (`armin ablation run SPEC --until-settled --max-seeds N`).

Adding seeds or arms to a finished ablation runs only the new trials: the spec's *contract* (task,
model base, optimizer, training, seed, objective) must not change, but factors, arms, seeds, the
seed design (fixed or adaptive, `max_seeds`, `first_round`, `step`) and the ROPE may (see
`contract_hash`).

The file is read as `AblationFile` (its sections as written, by `armin.config.from_mapping`) and
resolved into `AblationSpec` (the arms, seeds and design it means), which is what a study row
stores and `parse_stored` rebuilds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armin.config import Source, child, coerce, is_integer, require, to_mapping
from armin.errors import ConfigError
from armin.model.config import ModelConfig
from armin.seeding import REPLICATE, derive_seed
from armin.spec import overrides
from armin.spec.base import NAME_PATTERN, BaseSpec, Objective, load, read_spec_text, require_max_retries, spec_digest
from armin.stats import SequentialDesign
from armin.training.config import RunConfig

DEFAULT_MAX_RETRIES = 2
#: The parts of a resolved ablation spec every arm shares (`contract_hash`): changing one needs --force.
CONTRACT_SECTIONS = ("task", "model", "optimizer", "train", "seed", "objective")
ADAPTIVE = "adaptive"  # `[design] seeds = "adaptive"`: seeds on demand
#: first_round and step when a spec omits them: the statistics engine's own defaults.
DEFAULT_FIRST_ROUND, DEFAULT_STEP = SequentialDesign().first_round, SequentialDesign().step
_SEQUENTIAL_KEYS = ("max_seeds", "first_round", "step")
PAIRED = "at least 2 seeds are needed for paired statistics, got"  # a seed count below 2 (fixed or a first round)


# ---------------------------------------------------------------- the file, as written


@dataclass(frozen=True, kw_only=True)
class Design:
    """`[design]` as written: which arms, which seeds, the baseline."""

    baseline: Any = field(metadata={"help": "the arm every other arm is compared with"})  # levels or a name
    seeds: Any = None  # a count, a list of run seeds, or "adaptive"
    arms: Any = None  # a subset of the factorial: a list of factor-level tables
    max_retries: int = DEFAULT_MAX_RETRIES  # re-runs of a trial whose worker died unexplained
    max_seeds: int | None = None  # adaptive only (required there)
    first_round: int | None = None  # adaptive only
    step: int | None = None  # adaptive only
    allow_identical_arms: bool = False  # True: an A/A design (two names, one model)

    def __post_init__(self) -> None:
        require_max_retries(self.max_retries)


@dataclass(frozen=True)
class AblationObjective(Objective):
    """`[objective]` of an ablation: the metric, and the smallest difference in it that matters."""

    rope: float = field(metadata={"help": "the region of practical equivalence: the smallest difference in the "
                                          "metric that matters"})

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.rope >= 0, "rope", f"must be >= 0, got {self.rope}")


@dataclass(frozen=True, kw_only=True)
class AblationFile(BaseSpec):
    """An ablation file's sections, each checked for its own shape; `resolve` makes the `AblationSpec`."""

    factors: dict = field(default_factory=dict)  # model path -> levels: the full factorial is the arms
    extra_arms: dict = field(default_factory=dict)  # arm name -> model overrides, outside the factorial
    design: Design
    objective: AblationObjective

    def lstm_models(self) -> Iterable[str]:
        return []  # the arms' models are checked once built (AblationSpec)


# ---------------------------------------------------------------- the resolved spec


@dataclass(frozen=True)
class Arm:
    """One model variant: its name, the factor levels it sets (empty for an extra arm), its overrides."""

    name: str
    levels: tuple[tuple[str, Any], ...]  # (factor path, level) for factorial arms
    overrides: tuple[tuple[str, Any], ...]  # every model path this arm sets (levels included)

    @property
    def factorial(self) -> bool:
        return bool(self.levels)


@dataclass(frozen=True, kw_only=True)
class AblationSpec(BaseSpec):
    """A resolved ablation: every arm, every candidate seed, the baseline and the seed design."""

    factors: tuple[tuple[str, tuple], ...]  # (model path, levels)
    arms: tuple[Arm, ...]
    baseline: str  # an arm's name
    seeds: tuple[int, ...]  # run seed of each replicate; adaptive: all max_seeds candidates, in run order
    rope: float
    max_retries: int
    sequential: SequentialDesign | None = None  # None: every arm runs every seed; else seeds on demand
    allow_identical_arms: bool = False  # True: an A/A design (two names, one model); False: refused as a typo

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def arm_model(self, arm: Arm) -> ModelConfig:
        """The arm's overrides over the fixed model."""
        return overrides.apply(self.model, dict(arm.overrides))

    def lstm_models(self) -> Iterable[str]:
        return [f"the arm {a.name!r}" for a in self.arms if not self.arm_model(a).has_memory]


def arm_name(levels: Mapping[str, Any]) -> str:
    """`addressing=hidden, cell=armin`: readable in tables, stable across spec edits."""
    return ", ".join(f"{path.removeprefix('model.')}={value}" for path, value in levels.items())


def load_ablation(path: str | Path) -> AblationSpec:
    return parse_ablation(read_spec_text(path), str(path))


def parse_ablation(text: str, source: str) -> AblationSpec:
    return resolve(load(AblationFile, text, source), source)


def resolve(file: AblationFile, source: str) -> AblationSpec:
    """The arms, seeds and design `file` declares, each problem one line naming `source` and the key."""
    base = {f.name: getattr(file, f.name) for f in dataclasses.fields(BaseSpec)}
    model, design = file.model, file.design
    if not file.factors and not file.extra_arms:
        raise ConfigError(f"{source}: [factors]: missing (declare the components to toggle, or [extra_arms])")
    factors = _factors(file.factors, model, source)
    factorial = _factorial_arms(factors, design.arms, model, source)
    arms = factorial + _extra_arms(file.extra_arms, model, source)
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: extra_arms: an arm name repeats a factorial arm's name")
    if len(arms) < 2:
        raise ConfigError(f"{source}: an ablation needs at least 2 arms, got {len(arms)}")
    if not design.allow_identical_arms:
        _refuse_identical_arms(arms, model, source)
    baseline = _baseline(design.baseline, factors, arms, source)
    fixed = None if design.seeds == ADAPTIVE else _seeds(design.seeds, file.seed, source)
    sequential = _sequential(design, source)
    seeds = fixed if sequential is None else candidate_seeds((), file.seed, sequential.max_seeds)
    objective = Objective(metric=file.objective.metric, direction=file.objective.direction)
    try:
        return AblationSpec(**base | {"objective": objective}, factors=factors, arms=arms, baseline=baseline,
                            seeds=seeds, rope=file.objective.rope, max_retries=design.max_retries,
                            sequential=sequential, allow_identical_arms=design.allow_identical_arms)
    except ConfigError as e:
        raise ConfigError(child(Source(source), str(e))) from None


def _model_with(model: ModelConfig, values: Mapping[str, Any], where: str) -> ModelConfig:
    try:
        return overrides.apply(model, values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_path(path: str, where: str) -> None:
    overrides.check_path(path, where, noun="component", unit="arm")


def _factors(value: Any, model: ModelConfig, source: str) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: factors: expected a table of model paths and level lists")
    out = []
    for path, levels in value.items():
        where = f'{source}: factors."{path}"'
        _check_path(path, where)
        if not isinstance(levels, list) or len(levels) < 2:
            raise ConfigError(f"{where}: expected a list of at least 2 levels, got {levels!r}")
        seen: dict[ModelConfig, Any] = {}
        for level in levels:
            built = _model_with(model, {path: level}, f"{where}: level {level!r}")
            if built in seen:  # by value, not spelling: 1 and 1.0 are one temperature
                raise ConfigError(f"{where}: levels repeat a value: {seen[built]!r} and {level!r} in {levels!r}")
            seen[built] = level
        out.append((path, tuple(levels)))
    return tuple(out)

def _factorial_arms(factors, subset: Any, model: ModelConfig, source: str) -> tuple[Arm, ...]:
    if not factors:
        return ()
    paths = [p for p, _ in factors]
    combos = [dict(zip(paths, values)) for values in itertools.product(*(levels for _, levels in factors))]
    if subset is not None:
        if not isinstance(subset, list) or not subset:
            raise ConfigError(f"{source}: design.arms: expected a non-empty list of factor-level tables")
        chosen = []
        for i, arm in enumerate(subset):
            if not isinstance(arm, Mapping) or sorted(arm) != sorted(paths):
                raise ConfigError(f"{source}: design.arms[{i}]: must set every factor ({', '.join(paths)}), got "
                                  f"{arm!r}")
            levels = {p: arm[p] for p in paths}
            if levels not in combos:
                raise ConfigError(f"{source}: design.arms[{i}]: {arm!r} is not a combination of the factors' levels")
            chosen.append(levels)
        combos = chosen
    arms = []
    for levels in combos:
        name = arm_name(levels)
        _model_with(model, levels, f"{source}: factors: the arm {name}")
        arms.append(Arm(name=name, levels=tuple(levels.items()), overrides=tuple(levels.items())))
    return tuple(arms)


def _extra_arms(value: Any, model: ModelConfig, source: str) -> tuple[Arm, ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: extra_arms: expected tables [extra_arms.NAME] of model overrides")
    arms = []
    for name, overrides in value.items():
        where = f"{source}: extra_arms.{name}"
        if not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"{where}: the name must be letters, digits, '_', '.' or '-'")
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}: expected a table of model paths, e.g. \"model.arch\" = \"lstm\"")
        for path in overrides:
            _check_path(path, f'{where}."{path}"')
        _model_with(model, overrides, where)
        arms.append(Arm(name=name, levels=(), overrides=tuple(overrides.items())))
    return tuple(arms)


def _refuse_identical_arms(arms: tuple[Arm, ...], model: ModelConfig, source: str) -> None:
    """Two arms with one resolved model (by value: `1` and `1.0`, or an extra arm that repeats a factorial
    one) would train the same runs twice under two names."""
    seen: dict[ModelConfig, str] = {}
    for arm in arms:
        built = overrides.apply(model, dict(arm.overrides))
        if built in seen:
            raise ConfigError(f"{source}: arms {seen[built]!r} and {arm.name!r} are the same model; remove one, or "
                              f"set design.allow_identical_arms = true for an A/A check")
        seen[built] = arm.name


def _baseline(value: Any, factors, arms: tuple[Arm, ...], source: str) -> str:
    where = f"{source}: design.baseline"
    if isinstance(value, str):
        name = value
    elif isinstance(value, Mapping):
        name = arm_name({p: value.get(p) for p, _ in factors}) if sorted(value) == sorted(p for p, _ in factors) \
            else None
        if name is None:
            raise ConfigError(f"{where}: must set every factor ({', '.join(p for p, _ in factors)}), got {value!r}")
    else:
        raise ConfigError(f"{where}: expected factor levels {{ ... }} or an extra arm's name, got {value!r}")
    if name not in [a.name for a in arms]:
        raise ConfigError(f"{where}: {name!r} is not one of the arms ({'; '.join(a.name for a in arms)})")
    return name


def _sequential(design: Design, source: str) -> SequentialDesign | None:
    """The seeds-on-demand design of `seeds = "adaptive"`, or None for fixed seeds (then none of its keys)."""
    if design.seeds != ADAPTIVE:
        for key in _SEQUENTIAL_KEYS:
            if getattr(design, key) is not None:
                raise ConfigError(f"{source}: design.{key}: only applies to seeds = \"{ADAPTIVE}\" (this spec has "
                                  f"seeds = {design.seeds!r})")
        return None
    if design.max_seeds is None:
        raise ConfigError(f"{source}: design.max_seeds: missing (seeds = \"{ADAPTIVE}\" needs the most seeds per "
                          f"arm, e.g. max_seeds = 30)")
    first_round = DEFAULT_FIRST_ROUND if design.first_round is None else design.first_round
    step = DEFAULT_STEP if design.step is None else design.step
    return sequential_design({"first_round": first_round, "step": step, "max_seeds": design.max_seeds},
                             lambda key: f"{source}: design.{key}")


def sequential_design(values: Mapping[str, Any], where) -> SequentialDesign:
    """`SequentialDesign(**values)`, every problem one `ConfigError` naming its key (`where(key)`)."""
    for key in ("first_round", "step", "max_seeds"):
        coerce(int, values[key], where(key))
    if values["first_round"] < 2:
        raise ConfigError(f"{where('first_round')}: {PAIRED} {values['first_round']}")
    if values["step"] < 1:
        raise ConfigError(f"{where('step')}: must be >= 1, got {values['step']}")
    if values["max_seeds"] < values["first_round"]:
        raise ConfigError(f"{where('max_seeds')}: must be >= first_round ({values['first_round']}), got "
                          f"{values['max_seeds']}")
    return SequentialDesign(first_round=values["first_round"], step=values["step"], max_seeds=values["max_seeds"])


def candidate_seeds(first: tuple[int, ...], seed: int, n: int) -> tuple[int, ...]:
    """`n` run seeds in run order: `first`, then the replicate seeds derived from `seed` not among them.

    `candidate_seeds((), seed, n)` is exactly the seeds of `seeds = n`; the first k of any longer
    list are those of a shorter one, so raising max_seeds only appends seeds.
    """
    out, taken, r = list(first[:n]), set(first[:n]), 0
    while len(out) < n:
        s = derive_seed(seed, REPLICATE, r)
        r += 1
        if s not in taken:
            out.append(s)
            taken.add(s)
    return tuple(out)


def until_settled(spec: AblationSpec, *, max_seeds: int | None = None, first_round: int | None = None,
                  step: int | None = None) -> AblationSpec:
    """`spec` with seeds on demand: `armin ablation run SPEC --until-settled --max-seeds N`.

    A fixed spec's seeds come first among the candidates (so its finished runs count), and its
    first round is all of them, but at least DEFAULT_FIRST_ROUND (capped at max_seeds): below
    that the family's level rarely lets a look settle anything. An adaptive spec keeps its
    design; each given value replaces the spec's. Errors name the flags.
    """
    current = spec.sequential
    if current is None:
        if max_seeds is None:
            raise ConfigError("--until-settled: needs --max-seeds N (the most seeds any arm gets)")
        if isinstance(max_seeds, int) and max_seeds < len(spec.seeds):
            raise ConfigError(f"--max-seeds: must be at least the spec's {len(spec.seeds)} seeds, got {max_seeds}")
        default_first = max(len(spec.seeds), min(DEFAULT_FIRST_ROUND, max_seeds))
        current = SequentialDesign(first_round=default_first, step=DEFAULT_STEP, max_seeds=max_seeds)
    flags = {"max_seeds": "--max-seeds", "first_round": "--first-round", "step": "--step"}
    design = sequential_design({"first_round": current.first_round if first_round is None else first_round,
                                "step": current.step if step is None else step,
                                "max_seeds": current.max_seeds if max_seeds is None else max_seeds},
                               flags.__getitem__)
    return dataclasses.replace(spec, seeds=candidate_seeds(spec.seeds, spec.seed, design.max_seeds), sequential=design)


def _seeds(value: Any, seed: int, source: str) -> tuple[int, ...]:
    where = f"{source}: design.seeds"
    if is_integer(value):
        if value < 2:
            raise ConfigError(f"{where}: {PAIRED} {value}")
        return tuple(derive_seed(seed, REPLICATE, r) for r in range(value))
    if isinstance(value, list) and all(is_integer(v) and v >= 0 for v in value):
        if len(value) < 2 or len(set(value)) != len(value):
            raise ConfigError(f"{where}: expected at least 2 distinct seeds, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{where}: expected a count (e.g. 5), a list of integer seeds or \"{ADAPTIVE}\", got "
                      f"{value!r}")


def build_arm_run(spec: AblationSpec, arm: Arm, seed: int) -> RunConfig:
    """The run of one (arm, seed): the arm's overrides over the fixed model, everything else shared."""
    return spec.run(spec.arm_model(arm), seed)


def contract_hash(spec: AblationSpec | Mapping) -> str:
    """The digest of what every arm shares (`CONTRACT_SECTIONS`), which makes runs comparable across runs
    of the spec; of a live spec or a stored one (its JSON, parsed) alike (`armin.spec.base.spec_digest`).

    Arms, seeds, the seed design (fixed or adaptive, max_seeds, first_round, step) and the ROPE may
    change without changing it: they decide which runs exist, not what a run means.
    """
    return spec_digest(AblationSpec, spec if isinstance(spec, Mapping) else to_mapping(spec), CONTRACT_SECTIONS)


def resolved_mapping(spec: AblationSpec) -> dict[str, Any]:
    return to_mapping(spec)


__all__ = ["ADAPTIVE", "AblationFile", "AblationSpec", "Arm", "CONTRACT_SECTIONS", "DEFAULT_FIRST_ROUND",
           "DEFAULT_MAX_RETRIES", "DEFAULT_STEP", "Design", "arm_name", "build_arm_run", "candidate_seeds",
           "contract_hash", "load_ablation", "parse_ablation", "resolve", "resolved_mapping", "sequential_design",
           "until_settled"]
