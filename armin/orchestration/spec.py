"""Study specs: a TOML file in `studies/` describing one Optuna search over the model.

A study searches the model's components and sizes; the task, the optimizer and the training
budget are fixed, identical for every trial, so trials differ only in the model. The format:

    name = "copy-quick"                 # [A-Za-z0-9_.-], at most 100 characters; names the study in the database
    goal = "Which addressing ..."       # one line: the question the study answers
    seed = 0                            # study seed: every trial's seed derives from it

    [task]                              # any TaskConfig (armin.tasks), chosen by `name`
    name = "copy"
    max_len = 8

    [model]                             # fixed ModelConfig values; [space] overrides them per trial
    hidden_size = 32
    [model.temperature]                 # a fixed TemperatureSchedule (optional)
    kind = "constant"

    [optimizer]                         # OptimizerConfig, identical for every trial (optional)
    [train]                             # TrainConfig, identical for every trial (optional)

    [search]
    n_trials = 8                        # configurations to try (Optuna trials asked)
    seeds_per_config = 1                # each configuration is trained on this many seeds
    sampler = "random"                  # tpe | random | grid
    sampler_seed = 0                    # optional; default: the study seed
    tpe_startup_trials = 10             # tpe only, optional: random trials before TPE models anything
    pruner = "median"                   # none | median | hyperband
    n_startup_trials = 2                # median only, optional (default 5)
    n_warmup_steps = 100                # median only, optional (default 0): steps before a trial may be pruned
    min_resource = 100                  # hyperband only, optional (default: train.eval_every), in steps
    reduction_factor = 3                # hyperband only, optional (default 3)
    max_retries = 2                     # re-runs of a trial whose worker died unexplained (armin.storage.failures)

    [objective]                         # the value of `metric` at the run's last evaluation
    metric = "bits_error"               # eval_loss | train_loss | bits_error | accuracy | read_entropy | slot_usage
    direction = "minimize"              # minimize | maximize

    [resources]                         # per trial (optional)
    cpus = 1                            # > 0, fractions allowed (default 1)
    gpus = 0                            # >= 0, fractions allowed (default 0)
    memory_gb = 4                       # optional: GiB the trial may allocate (default: its CPU share of the node)

    [space]                             # dotted paths into the model: model.* and model.temperature.*
    "model.cell" = { choices = ["armin", "lstm"] }                      # categorical
    "model.hidden_size" = { low = 16, high = 64, step = 16 }            # int range (step default 1)
    "model.temperature.start" = { low = 0.1, high = 2.0, log = true }   # float range

A space entry may also be written as nested tables (`[space.model] cell = { choices = [...] }`).

Everything is checked by `parse_spec` before anything runs, and every problem is one
`ConfigError` line that starts with the file and names the key. Omitted optional settings are
resolved into the returned `StudySpec` (e.g. `sampler_seed`, the pruner's settings), so the stored
resolved spec states every policy the study used. The space is kept sorted by path: the order of
entries in the file changes neither the sampling nor `spec_hash`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna

from armin.config import from_mapping, require, to_mapping
from armin.errors import ConfigError
from armin.model.config import ModelConfig
from armin.seeding import derive_seed
from armin.tasks import (
    AssociativeRecallConfig,
    AssociativeRecallTask,
    CharLMConfig,
    CharLMTask,
    CopyConfig,
    CopyTask,
    MNISTTask,
    PermMNISTConfig,
    PrioritySortConfig,
    PrioritySortTask,
    RepeatCopyConfig,
    RepeatCopyTask,
    SeqDigitsConfig,
    SeqDigitsTask,
    SeqMNISTConfig,
    TaskConfig,
)
from armin.training.config import OptimizerConfig, RunConfig, TrainConfig

# ---------------------------------------------------------------- policy defaults, stated once

TPE_STARTUP_TRIALS = 10  # trials sampled at random before TPE fits its model
TPE_MULTIVARIATE = True  # joint (multivariate) TPE; Optuna 5's own default for one objective
TPE_CONSTANT_LIAR = True  # running trials count as bad guesses, so parallel workers spread out
MEDIAN_STARTUP_TRIALS = 5  # finished trials before the median pruner prunes anything
MEDIAN_WARMUP_STEPS = 0  # training steps of a trial before it may be pruned
HYPERBAND_REDUCTION_FACTOR = 3  # keep 1/3 of the trials at each rung
MIN_MEMORY_GB = 0.0625  # resources.memory_gb: below 64 MiB not even the smallest model and its batches fit
MAX_CORNER_CHECKS = 100_000  # combinations of space corners validated at load (beyond: per trial)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 100  # characters; a name becomes a folder (reports/NAME) and Ray/Optuna labels

#: The direction each metric must be optimised in (metrics absent here may go either way).
METRIC_DIRECTIONS = {"eval_loss": "minimize", "train_loss": "minimize", "bits_error": "minimize",
                     "accuracy": "maximize", "bpc": "minimize"}
#: Metrics that only some tasks record: the task's headline metric.
TASK_METRICS: dict[type, str] = {
    CopyConfig: CopyTask.metric,
    RepeatCopyConfig: RepeatCopyTask.metric,
    AssociativeRecallConfig: AssociativeRecallTask.metric,
    PrioritySortConfig: PrioritySortTask.metric,
    SeqDigitsConfig: SeqDigitsTask.metric,
    SeqMNISTConfig: MNISTTask.metric,
    PermMNISTConfig: MNISTTask.metric,
    CharLMConfig: CharLMTask.metric,
}
#: Memory probes: recorded only by models with a memory (arch = "armin").
MEMORY_METRICS = ("read_entropy", "slot_usage")

PARAM_KEYS = ("choices", "low", "high", "step", "log")


# ---------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Param:
    """One searched parameter: `choices` (categorical) or a `low..high` range (int or float)."""

    path: str  # dotted path into the run config, e.g. "model.temperature.start"; the Optuna param name
    choices: tuple | None = None  # categorical values; None for a range
    low: float | int | None = None  # inclusive; int for int fields, float for float fields
    high: float | int | None = None  # inclusive
    step: float | int | None = None  # int ranges: >= 1 (1 when omitted); float ranges: None = continuous
    log: bool = False  # sample on a log scale (ranges only, low > 0)

    @property
    def kind(self) -> Literal["categorical", "int", "float"]:
        if self.choices is not None:
            return "categorical"
        return "int" if isinstance(self.low, int) else "float"


@dataclass(frozen=True)
class SearchConfig:
    """How configurations are chosen, pruned and replicated. Optional settings left None at parse
    time are resolved by `parse_spec` for the chosen sampler/pruner and stay None otherwise."""

    n_trials: int  # configurations to try
    sampler: Literal["tpe", "random", "grid"]  # tpe: adaptive; random: independent draws; grid: every point
    pruner: Literal["none", "median", "hyperband"]  # none: every trial runs its full budget
    seeds_per_config: int = 1  # each configuration is trained on this many seeds
    sampler_seed: int | None = None  # None: the study seed
    tpe_startup_trials: int | None = None  # tpe only: random trials before TPE models anything
    n_startup_trials: int | None = None  # median only: finished trials before anything is pruned
    n_warmup_steps: int | None = None  # median only: steps within a trial before it may be pruned
    min_resource: int | None = None  # hyperband only: steps at the first rung (None: train.eval_every)
    reduction_factor: int | None = None  # hyperband only: 1/reduction_factor of trials go on at each rung
    max_retries: int = 2  # re-runs of a trial whose worker died unexplained (armin.storage.failures)

    def __post_init__(self) -> None:
        require(self.n_trials >= 1, "n_trials", f"must be >= 1, got {self.n_trials}")
        require(self.seeds_per_config >= 1, "seeds_per_config", f"must be >= 1, got {self.seeds_per_config}")
        require(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        for name, owner in (("tpe_startup_trials", ("sampler", "tpe")), ("n_startup_trials", ("pruner", "median")),
                            ("n_warmup_steps", ("pruner", "median")), ("min_resource", ("pruner", "hyperband")),
                            ("reduction_factor", ("pruner", "hyperband"))):
            require(getattr(self, name) is None or getattr(self, owner[0]) == owner[1], name,
                    f"only applies to {owner[0]} = {owner[1]!r} (this spec has {owner[0]} = {getattr(self, owner[0])!r})")
        for name in ("tpe_startup_trials", "n_startup_trials", "n_warmup_steps"):
            value = getattr(self, name)
            require(value is None or value >= 0, name, f"must be >= 0, got {value}")
        require(self.min_resource is None or self.min_resource >= 1, "min_resource",
                f"must be >= 1, got {self.min_resource}")
        require(self.reduction_factor is None or self.reduction_factor >= 2, "reduction_factor",
                f"must be >= 2, got {self.reduction_factor}")


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: `metric` at the run's last evaluation."""

    metric: Literal["eval_loss", "train_loss", "bits_error", "accuracy", "bpc", "read_entropy", "slot_usage"]
    direction: Literal["minimize", "maximize"]


#: What the trainer records at each evaluation and a study may optimise.
METRICS: tuple[str, ...] = typing.get_args(typing.get_type_hints(Objective)["metric"])


@dataclass(frozen=True)
class Resources:
    """What one trial reserves from the cluster."""

    cpus: float = 1.0  # > 0, fractions allowed
    gpus: float = 0.0  # >= 0, fractions allowed (0.25: four trials share a GPU)
    # GiB the trial may allocate (host memory; reserved from Ray's `memory` resource too). None: the
    # trial's share of its node by CPUs, so trials that fit by CPU fit in memory (armin.orchestration.memory)
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        require(math.isfinite(self.cpus) and self.cpus > 0, "cpus", f"must be > 0, got {self.cpus}")
        require(math.isfinite(self.gpus) and self.gpus >= 0, "gpus", f"must be >= 0, got {self.gpus}")
        require(self.memory_gb is None or self.memory_gb >= MIN_MEMORY_GB, "memory_gb",
                f"must be >= {MIN_MEMORY_GB} (GiB a trial may allocate), got {self.memory_gb}")

    @property
    def memory_bytes(self) -> int | None:
        """What the trial reserves from Ray's `memory` resource; None when unset (no reservation)."""
        return None if self.memory_gb is None else int(self.memory_gb * 2**30)


@dataclass(frozen=True)
class StudySpec:
    """A resolved, validated study: the fixed run settings plus the searched space."""

    name: str  # the study's name in the database
    goal: str  # one line: the question this study answers
    seed: int  # study seed: trial seeds derive from it (`trial_seed`)
    task: TaskConfig
    model: ModelConfig  # fixed model values; searched parameters override them
    optimizer: OptimizerConfig  # identical for every trial
    train: TrainConfig  # identical for every trial
    search: SearchConfig
    objective: Objective
    resources: Resources
    space: tuple[Param, ...] = field(default=())  # sorted by path


# ---------------------------------------------------------------- what can be searched


def _leaf_fields(cls: type, prefix: str) -> dict[str, Any]:
    """Dotted path -> type hint for every non-dataclass field of `cls`, nested dataclasses expanded."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out |= _leaf_fields(hint, f"{prefix}.{f.name}")
        else:
            out[f"{prefix}.{f.name}"] = hint
    return out


#: Every searchable path and its type: the fields of `ModelConfig` and its `TemperatureSchedule`.
SEARCHABLE: dict[str, Any] = _leaf_fields(ModelConfig, "model")


def _allowed_values(hint: Any) -> tuple | None:
    """The finite set of values a field takes (Literal, bool), or None for numbers."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if hint is bool:
        return (False, True)
    return None


# ---------------------------------------------------------------- loading


def read_spec_text(path: str | Path) -> str:
    """A spec file's text (studies and ablations alike), or one `ConfigError` line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the spec ({e.strerror or type(e).__name__})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def parse_toml(text: str, source: str) -> dict:
    """TOML `text` as a dict, or one `ConfigError` line starting with `source`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {' '.join(str(e).split())}") from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec; every problem is one `ConfigError` line naming file and key."""
    return parse_spec(read_spec_text(path), str(path))


def parse_spec(text: str, source: str) -> StudySpec:
    """Parse and validate spec `text`; `source` (the file name) starts every error message."""
    return _build(parse_toml(text, source), source)


_TOP_KEYS = ("name", "goal", "seed", "task", "model", "optimizer", "train", "search", "objective", "resources",
             "space")
_REQUIRED_KEYS = ("name", "goal", "seed")
_REQUIRED_SECTIONS = ("task", "search", "objective", "space")


def _build(data: dict, source: str) -> StudySpec:
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{source}: unknown key '{key}' (allowed: {', '.join(_TOP_KEYS)})")
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise ConfigError(f"{source}: {key}: missing (a study needs name, goal and seed at the top)")
    for key in _REQUIRED_SECTIONS:
        if key not in data:
            raise ConfigError(f"{source}: [{key}]: missing section (required: {', '.join(_REQUIRED_SECTIONS)})")

    name, goal, seed = header(data, source)

    task = _task(data["task"], f"{source}: task")
    model = from_mapping(ModelConfig, data.get("model", {}), f"{source}: model")
    optimizer = from_mapping(OptimizerConfig, data.get("optimizer", {}), f"{source}: optimizer")
    train = from_mapping(TrainConfig, data.get("train", {}), f"{source}: train")
    search = _section(SearchConfig, data["search"], f"{source}: search")
    objective = _section(Objective, data["objective"], f"{source}: objective")
    resources = from_mapping(Resources, data.get("resources", {}), f"{source}: resources")
    space = _space(data["space"], model, source)

    search = _resolve_search(search, seed, train, source)
    spec = StudySpec(name=name, goal=goal, seed=seed, task=task, model=model, optimizer=optimizer, train=train,
                     search=search, objective=objective, resources=resources, space=space)
    _check_objective(spec, source)
    _check_resources(spec, source)
    _check_grid(spec, source)
    _check_combinations(spec, source)
    return spec


def header(data: dict, source: str) -> tuple[str, str, int]:
    """A spec's `name`, one-line `goal` and `seed`, validated (studies and ablations share them)."""
    name = _string(data["name"], f"{source}: name")
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{source}: name: {name!r} must be letters, digits, '_', '.' or '-' (starting with a "
                          f"letter or digit)")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"{source}: name: at most {MAX_NAME_LENGTH} characters, got {len(name):,} "
                          f"({name[:20]}...)")
    goal = _string(data["goal"], f"{source}: goal")
    if not goal.strip() or "\n" in goal.strip():
        raise ConfigError(f"{source}: goal: must be one non-empty line")
    seed = data["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{source}: seed: expected an integer >= 0, got {seed!r}")
    return name, goal, seed


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
    return value


def _task(value: Any, where: str) -> TaskConfig:
    """The task config chosen by its `name` among the members of `TaskConfig`."""
    by_name = {typing.get_args(typing.get_type_hints(c)["name"])[0]: c for c in typing.get_args(TaskConfig)}
    if not isinstance(value, Mapping) or "name" not in value:
        raise ConfigError(f"{where}: needs a 'name' (one of {', '.join(by_name)})")
    if value["name"] not in by_name:
        raise ConfigError(f"{where}.name: {value['name']!r} is not allowed (choose from "
                          f"{', '.join(map(repr, by_name))})")
    return from_mapping(by_name[value["name"]], value, where)


def _section(cls: type, value: Any, where: str) -> Any:
    """`from_mapping`, with a one-line message for a missing required key."""
    if isinstance(value, Mapping):
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in value:
                hint = typing.get_type_hints(cls)[f.name]
                allowed = _allowed_values(hint)
                choose = f" (choose from {', '.join(map(repr, allowed))})" if allowed else ""
                raise ConfigError(f"{where}.{f.name}: missing, and there is no default{choose}")
    return from_mapping(cls, value, where)


def _resolve_search(search: SearchConfig, seed: int, train: TrainConfig, source: str) -> SearchConfig:
    """Fill the omitted settings of the chosen sampler and pruner, so the spec states them all."""
    resolved: dict[str, Any] = {}
    if search.sampler_seed is None:
        resolved["sampler_seed"] = seed
    if search.sampler == "tpe" and search.tpe_startup_trials is None:
        resolved["tpe_startup_trials"] = TPE_STARTUP_TRIALS
    if search.pruner == "median":
        if search.n_startup_trials is None:
            resolved["n_startup_trials"] = MEDIAN_STARTUP_TRIALS
        if search.n_warmup_steps is None:
            resolved["n_warmup_steps"] = MEDIAN_WARMUP_STEPS
    if search.pruner == "hyperband":
        if search.min_resource is None:
            resolved["min_resource"] = train.eval_every
        if search.reduction_factor is None:
            resolved["reduction_factor"] = HYPERBAND_REDUCTION_FACTOR
        min_resource = resolved.get("min_resource", search.min_resource)
        if min_resource > train.steps:
            raise ConfigError(f"{source}: search.min_resource: `min_resource <= train.steps` must hold, got "
                              f"min_resource={min_resource}, train.steps={train.steps}")
    return dataclasses.replace(search, **resolved)


# ---------------------------------------------------------------- the space


def _flatten_space(value: Any, prefix: str, where: str) -> dict[str, Any]:
    """`{"model.cell": {...}}` and `{"model": {"cell": {...}}}` both give `{"model.cell": {...}}`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table of parameters, got {value!r}")
    out: dict[str, Any] = {}
    for key, sub in value.items():
        path = f"{prefix}.{key}" if prefix else key
        is_param = not isinstance(sub, Mapping) or not sub or any(k in PARAM_KEYS for k in sub)
        out |= {path: sub} if is_param else _flatten_space(sub, path, where)
    return out


def _space(value: Any, model: ModelConfig, source: str) -> tuple[Param, ...]:
    entries = _flatten_space(value, "", f"{source}: space")
    if not entries:
        raise ConfigError(f"{source}: space: nothing to search; add at least one parameter, e.g. "
                          f"\"model.cell\" = {{ choices = [\"armin\", \"lstm\"] }}")
    params = [_param(path, entries[path], model, f'{source}: space."{path}"') for path in sorted(entries)]
    return tuple(params)


def _param(path: str, table: Any, model: ModelConfig, where: str) -> Param:
    if path not in SEARCHABLE:
        section = path.split(".")[0]
        searchable = ", ".join(SEARCHABLE)
        if section in ("task", "optimizer", "train"):
            raise ConfigError(f"{where}: [{section}] is fixed by design (identical for every trial, so trials "
                              f"differ only in the model); searchable: {searchable}")
        if path in ("model", "model.temperature"):
            raise ConfigError(f"{where}: is a table; search its fields (searchable: {searchable})")
        raise ConfigError(f"{where}: unknown parameter (searchable: {searchable})")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table like {{ choices = [...] }} or {{ low = ..., high = ... }}, "
                          f"got {table!r}")
    for key in table:
        if key not in PARAM_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(PARAM_KEYS)})")
    hint = SEARCHABLE[path]
    if "choices" in table:
        extra = [k for k in table if k != "choices"]
        if extra:
            raise ConfigError(f"{where}: '{extra[0]}' cannot be combined with choices (give choices, or low/high)")
        return _categorical(path, table["choices"], hint, model, where)
    if "low" not in table or "high" not in table:
        raise ConfigError(f"{where}: needs choices = [...], or both low and high")
    if _allowed_values(hint) is not None:
        raise ConfigError(f"{where}: takes one of {', '.join(map(repr, _allowed_values(hint)))}; use "
                          f"choices = [...] instead of a range")
    return _range(path, table, hint, model, where)


def _categorical(path: str, choices: Any, hint: Any, model: ModelConfig, where: str) -> Param:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
    allowed = _allowed_values(hint)
    for value in choices:
        if allowed is not None:
            if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
                raise ConfigError(f"{where}: {value!r} is not an allowed value (choose from "
                                  f"{', '.join(map(repr, allowed))})")
        else:
            _check_number(value, hint, f"{where}: choice")
    values = tuple(float(v) if hint is float else v for v in choices)
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: choices repeat a value: {list(values)!r}")
    if len(values) == 1:
        raise ConfigError(f"{where}: a single choice {values[0]!r} is not a search; set it in [model] instead")
    for value in values:
        _try_model(model, {path: value}, f"{where}: choice {value!r} is invalid")
    return Param(path=path, choices=values)


def _check_number(value: Any, hint: Any, where: str) -> None:
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be finite, got {value!r}")


def _range(path: str, table: Mapping, hint: Any, model: ModelConfig, where: str) -> Param:
    low, high, step, log = table["low"], table["high"], table.get("step"), table.get("log", False)
    _check_number(low, hint, f"{where}: low")
    _check_number(high, hint, f"{where}: high")
    if step is not None:
        _check_number(step, hint, f"{where}: step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log: expected true or false, got {log!r}")
    if hint is float:
        low, high, step = float(low), float(high), None if step is None else float(step)
    elif step is None:
        step = 1
    if low > high:
        raise ConfigError(f"{where}: `low <= high` must hold, got low={low}, high={high}")
    if low == high:
        raise ConfigError(f"{where}: low == high == {low} is not a search; set it in [model] instead")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be > 0, got step={step}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got low={low}")
    if log and step is not None and step != 1:
        raise ConfigError(f"{where}: log cannot be combined with step={step} (Optuna samples log ranges without "
                          f"a step{'' if hint is float else ' other than 1'})")
    if step is not None:
        n = round((high - low) / step)
        if abs(low + n * step - high) > 1e-9 * max(1.0, abs(high)):
            raise ConfigError(f"{where}: `high - low` must be a multiple of step, got low={low}, high={high}, "
                              f"step={step}")
    for key, value in (("low", low), ("high", high)):
        _try_model(model, {path: value}, f"{where}: {key}={value} is invalid")
    return Param(path=path, low=low, high=high, step=step, log=log)


# ---------------------------------------------------------------- applying parameters


def _apply(model: ModelConfig, params: Mapping[str, object]) -> ModelConfig:
    """`model` with `params` (dotted paths) set, validated by the dataclasses' own checks.

    Types are checked by `from_mapping`; raises ConfigError naming the field (`model.hidden_size: ...`).
    """
    data = to_mapping(model)
    for path, value in params.items():
        parts = path.split(".")[1:]
        node = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return from_mapping(ModelConfig, data, "model")


def _replace(model: ModelConfig, params: Mapping[str, object]) -> ModelConfig:
    """`_apply` for values whose types are already checked: only the dataclasses' own validation (fast)."""
    top = {path.split(".")[1]: v for path, v in params.items() if not path.startswith("model.temperature.")}
    temp = {path.split(".")[2]: v for path, v in params.items() if path.startswith("model.temperature.")}
    try:
        temperature = dataclasses.replace(model.temperature, **temp)
    except ConfigError as e:
        raise ConfigError(f"model.temperature.{e}") from None
    try:
        return dataclasses.replace(model, temperature=temperature, **top)
    except ConfigError as e:
        raise ConfigError(f"model.{e}") from None


def _try_model(model: ModelConfig, params: Mapping[str, object], message: str) -> None:
    try:
        _apply(model, params)
    except ConfigError as e:
        raise ConfigError(f"{message} ({e})") from None


def build_run(spec: StudySpec, params: Mapping[str, object], seed: int) -> RunConfig:
    """The run for one trial: `params` ({path: value}, every searched path) over the fixed model.

    The task, optimizer and training budget are the spec's own objects, identical for every trial.
    Raises ConfigError for an unknown/missing parameter or an invalid combination.
    """
    paths = [p.path for p in spec.space]
    unknown = [k for k in params if k not in paths]
    missing = [k for k in paths if k not in params]
    if unknown or missing:
        raise ConfigError(f"study '{spec.name}': parameters do not match the space (unknown: "
                          f"{', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'})")
    try:
        model = _apply(spec.model, params)
    except ConfigError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        raise ConfigError(f"study '{spec.name}': invalid combination {shown}: {e}") from None
    return RunConfig(task=spec.task, model=model, optimizer=spec.optimizer, train=spec.train, seed=seed)


# ---------------------------------------------------------------- cross-section checks


def _check_objective(spec: StudySpec, source: str) -> None:
    metric, where = spec.objective.metric, f"{source}: objective.metric"
    task_metric = TASK_METRICS[type(spec.task)]
    if metric in set(TASK_METRICS.values()) and metric != task_metric:
        owners = sorted(c.name for c, m in TASK_METRICS.items() if m == metric)
        raise ConfigError(f"{where}: {metric!r} is recorded only by {', '.join(owners)}; task {spec.task.name!r} "
                          f"records {task_metric}, eval_loss, train_loss")
    if metric in MEMORY_METRICS:
        arch = next((p for p in spec.space if p.path == "model.arch"), None)
        if (arch is None and spec.model.arch == "lstm") or (arch is not None and "lstm" in arch.choices):
            raise ConfigError(f"{where}: {metric!r} is a memory probe, not recorded for arch = 'lstm' (the "
                              f"memory-less baseline); fix model.arch = 'armin' or choose another metric")
    expected = METRIC_DIRECTIONS.get(metric)
    if expected is not None and spec.objective.direction != expected:
        raise ConfigError(f"{source}: objective.direction: {metric} must be {expected}d, got "
                          f"{spec.objective.direction!r}")


def _check_resources(spec: StudySpec, source: str) -> None:
    on_gpu = spec.train.device.startswith("cuda")
    if on_gpu and spec.resources.gpus == 0:
        raise ConfigError(f"{source}: resources.gpus: train.device is {spec.train.device!r} but gpus = 0; a trial "
                          f"would see no GPU (reserve a share, e.g. gpus = 0.25)")
    if not on_gpu and spec.resources.gpus > 0:
        raise ConfigError(f"{source}: resources.gpus: {spec.resources.gpus} reserved but train.device is "
                          f"{spec.train.device!r}; set gpus = 0 or device = \"cuda\"")


def _check_grid(spec: StudySpec, source: str) -> None:
    if spec.search.sampler != "grid":
        return
    for p in spec.space:
        if p.kind == "float" and p.step is None:
            raise ConfigError(f'{source}: space."{p.path}": a grid sampler needs a step for a float range (or '
                              f'choices = [...])')
    size = grid_size(spec)
    if spec.search.n_trials > size:
        raise ConfigError(f"{source}: search.n_trials: {spec.search.n_trials} is more than the grid's {size} "
                          f"points; set n_trials <= {size}")


def _corners(p: Param) -> tuple:
    return p.choices if p.kind == "categorical" else (p.low, p.high)


def _check_combinations(spec: StudySpec, source: str) -> None:
    """Every combination of the space's corners builds a valid model.

    The model's cross-field rules are thresholds (`tardis` needs hidden_size >= 4, an anneal needs
    steps > 0), so checking each range at its ends with every categorical value covers the space.
    """
    corners = [_corners(p) for p in spec.space]
    if math.prod(len(c) for c in corners) > MAX_CORNER_CHECKS:
        return  # too many to check here; build_run still rejects a bad combination per trial
    paths = [p.path for p in spec.space]
    for values in itertools.product(*corners):
        params = dict(zip(paths, values))
        try:
            _replace(spec.model, params)
        except ConfigError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ConfigError(f"{source}: space: the combination {shown} is invalid ({e})") from None


# ---------------------------------------------------------------- Optuna


def grid_space(spec: StudySpec) -> dict[str, list]:
    """Every parameter's grid values: choices, or low..high by step (needs a step for floats)."""
    out: dict[str, list] = {}
    for p in spec.space:
        if p.kind == "categorical":
            out[p.path] = list(p.choices)
        elif p.step is None:
            raise ConfigError(f'study \'{spec.name}\': space."{p.path}": a grid needs a step for a float range')
        else:
            n = round((p.high - p.low) / p.step)
            values = [p.low + i * p.step for i in range(n)] + [p.high]
            out[p.path] = values if p.kind == "int" else [round(v, 12) for v in values]
    return out


def grid_size(spec: StudySpec) -> int | None:
    """The number of grid points when the sampler is grid, else None."""
    if spec.search.sampler != "grid":
        return None
    return math.prod(len(v) for v in grid_space(spec).values())


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without the `study.stop()` it calls when the grid is used up.

    That call only works inside `study.optimize`: with ask-and-tell (our driver) the `tell` of the
    last grid point raises RuntimeError, and the `tell` of an enqueued trial (a replicate or a
    retry, which has no grid id) raises KeyError once one point is left. The driver bounds the
    study itself (`search.n_trials <= grid_size`, checked at load). Sampling is unchanged.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None


def resume_seed(spec: StudySpec, trials_so_far: int = 0) -> int:
    """The seed of the sampler a driver builds when its Optuna study already holds `trials_so_far` trials.

    The rule: a fresh study (no trials yet) uses the spec's `sampler_seed` itself, so a fresh run
    with the same spec samples the same first configurations; a resumed one (after Ctrl-C, a crash
    or `--force`) uses `derive_seed(sampler_seed, "resume", trials_so_far)`, cut to 32 bits.
    Optuna's random and TPE samplers draw from a `numpy` RandomState seeded once at construction
    (TPE's startup trials come from an inner RandomSampler with the same seed), and nothing of that
    state is stored in the study: rebuilding them with the spec's seed replays the stream from its start, so a resumed
    search re-sampled configurations 0, 1, ... bit for bit. Every driver that asks for anything adds
    at least one trial to the Optuna study (asked trials are stored at once, a dead driver's are
    failed, never removed), so no two drivers of one study that sample get the same seed, and the
    seed depends on the database alone: resuming the same database again samples the same
    configurations. The resumed configurations are not those an uninterrupted run would have
    drawn (replaying the stream cannot be exact for TPE, whose draws depend on the values told),
    only new draws.

    The grid sampler keeps the spec's seed: its seed fixes the shuffled order of the grid that the
    `grid_id`s stored on each trial refer to, and it skips the grid points earlier trials took (by
    trial number, then the unvisited ones), so a resumed grid search never repeats a point as long
    as the order stays the same.
    """
    seed = spec.search.sampler_seed
    if spec.search.sampler == "grid" or trials_so_far <= 0:
        return seed
    return derive_seed(seed, "resume", trials_so_far) >> 31  # numpy's RandomState takes 32 bits


def make_sampler(spec: StudySpec, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, every setting stated (never Optuna's implicit default).

    `trials_so_far`: the trials already in the study's Optuna tables; it picks the seed
    (`resume_seed`), so that a resumed search continues with new draws instead of repeating
    the configurations the earlier drivers sampled.
    """
    s, seed = spec.search, resume_seed(spec, trials_so_far)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.tpe_startup_trials,
                                          multivariate=TPE_MULTIVARIATE, constant_liar=TPE_CONSTANT_LIAR)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return AskTellGridSampler(grid_space(spec), seed=seed)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner; steps are training steps, reported at every evaluation."""
    s = spec.search
    if s.pruner == "none":
        return optuna.pruners.NopPruner()
    if s.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials, n_warmup_steps=s.n_warmup_steps,
                                           interval_steps=1, n_min_trials=1)
    return optuna.pruners.HyperbandPruner(min_resource=s.min_resource, max_resource=spec.train.steps,
                                          reduction_factor=s.reduction_factor, bootstrap_count=0)


def suggest(trial: optuna.trial.BaseTrial, spec: StudySpec) -> dict[str, object]:
    """Ask `trial` for every searched parameter (named by its dotted path); returns {path: value}."""
    out: dict[str, object] = {}
    for p in spec.space:
        if p.kind == "categorical":
            out[p.path] = trial.suggest_categorical(p.path, list(p.choices))
        elif p.kind == "int":
            out[p.path] = trial.suggest_int(p.path, p.low, p.high, step=p.step, log=p.log)
        else:
            out[p.path] = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
    return out


def trial_seed(spec: StudySpec, config_id: int, replicate: int) -> int:
    """The run seed of replicate `replicate` of configuration `config_id` (stable across processes)."""
    return derive_seed(spec.seed, "trial", config_id, replicate)


# ---------------------------------------------------------------- identity


def resolved_mapping(spec: StudySpec) -> dict[str, Any]:
    """The resolved spec as plain JSON-able values (what a study row stores)."""
    return to_mapping(spec)


def spec_hash(spec: StudySpec | str, source: str = "<spec>") -> str:
    """sha256 of the resolved spec (canonical JSON, sorted keys).

    Takes a `StudySpec` or the spec's TOML text (parsed with `source` for error messages).
    Whitespace, comments, key order and omitted-but-defaulted values do not change it; any
    resolved value does.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec, source)
    mapping = resolved_mapping(spec)
    if mapping["resources"]["memory_gb"] is None:  # added after studies existed: hashed only when set,
        del mapping["resources"]["memory_gb"]  # so their hashes (and their resumes) stay valid
    canonical = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


__all__ = [
    "AskTellGridSampler",
    "METRICS",
    "Objective",
    "Param",
    "Resources",
    "SEARCHABLE",
    "SearchConfig",
    "StudySpec",
    "build_run",
    "grid_size",
    "grid_space",
    "load_spec",
    "make_pruner",
    "make_sampler",
    "resume_seed",
    "parse_spec",
    "resolved_mapping",
    "spec_hash",
    "suggest",
    "trial_seed",
]
