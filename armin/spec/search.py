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
    metric = "bits_error"               # eval_loss | train_loss | the task's metric | read_entropy | slot_usage
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

Everything is checked by `parse_spec` (one `armin.config.from_mapping` of `SearchSpec`) before anything runs, and every problem is one
`ConfigError` line that starts with the file and names the key. Omitted optional settings are
resolved into the returned `SearchSpec` (e.g. `sampler_seed`, the pruner's settings), so the stored
resolved spec states every policy the study used. The space is kept sorted by path: the order of
entries in the file changes neither the sampling nor `spec_hash`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from armin.config import (allowed_values, coerce, from_mapping, is_allowed, not_allowed, refuse_unknown_keys,
                          require, to_mapping)
from armin.errors import ConfigError
from armin.model.config import ModelConfig
from armin.seeding import TRIAL, derive_seed
from armin.spec import overrides
from armin.spec.base import BaseSpec, load, read_spec_text, require_max_retries, spec_digest
from armin.spec.overrides import SEARCHABLE
from armin.training.config import RunConfig

# ---------------------------------------------------------------- policy defaults, stated once

TPE_STARTUP_TRIALS = 10  # trials sampled at random before TPE fits its model
MEDIAN_STARTUP_TRIALS = 5  # finished trials before the median pruner prunes anything
MEDIAN_WARMUP_STEPS = 0  # training steps of a trial before it may be pruned
HYPERBAND_REDUCTION_FACTOR = 3  # keep 1/3 of the trials at each rung
MAX_CORNER_CHECKS = 100_000  # combinations of space corners validated at load (beyond: per trial)

PARAM_KEYS = ("choices", "low", "high", "step", "log")


# ---------------------------------------------------------------- the sections


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

    @property
    def corners(self) -> tuple:
        """The values that bound what this parameter can give: every choice, or the range's ends."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

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
        require_max_retries(self.max_retries)
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


def parse_space(value: Any, where: str) -> tuple[Param, ...]:
    """`[space]` as written (dotted paths or nested tables, any order) or as stored (a list of `Param`s),
    sorted by path; each entry's own rules. What needs the model is `SearchSpec`'s."""
    if isinstance(value, (list, tuple)):
        return tuple(sorted((from_mapping(Param, p, f"{where}[{i}]") for i, p in enumerate(value)),
                            key=lambda p: p.path))
    entries = _flatten_space(value, "", where)
    if not entries:
        raise ConfigError(f"{where}: nothing to search; add at least one parameter, e.g. "
                          f"\"model.cell\" = {{ choices = [\"armin\", \"lstm\"] }}")
    return tuple(_param(path, entries[path], f'{where}."{path}"') for path in sorted(entries))


@dataclass(frozen=True, kw_only=True)
class SearchSpec(BaseSpec):
    """A resolved, validated study: the fixed run settings plus the searched space.

    Omitted sampler/pruner settings are resolved here (`__post_init__`), so a stored spec states every
    policy and parsing it back gives the same spec.
    """

    search: SearchConfig
    space: tuple[Param, ...] = field(metadata={"parse": parse_space, "section": True})  # sorted by path

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "search", _resolve_search(self.search, self.seed, self.train))
        for p in self.space:
            kind = "choice" if p.kind == "categorical" else None
            for key, value in ((kind, v) for v in p.choices) if kind else (("low", p.low), ("high", p.high)):
                shown = f"choice {value!r}" if key == "choice" else f"{key}={value}"
                overrides.try_apply(self.model, {p.path: value}, f'space."{p.path}": {shown} is invalid')
        self._check_grid()
        self._check_combinations()

    def lstm_models(self) -> Iterable[str]:
        arch = next((p for p in self.space if p.path == "model.arch"), None)
        if arch is None:
            return super().lstm_models()
        return ["arch = 'lstm'"] if "lstm" in arch.choices else []

    def _check_grid(self) -> None:
        if self.search.sampler != "grid":
            return
        for p in self.space:
            require(p.kind != "float" or p.step is not None, f'space."{p.path}"',
                    "a grid sampler needs a step for a float range (or choices = [...])")
        size = grid_size(self)
        require(self.search.n_trials <= size, "search.n_trials",
                f"{self.search.n_trials} is more than the grid's {size} points; set n_trials <= {size}")

    def _check_combinations(self) -> None:
        """Every combination of the space's corners builds a valid model.

        The model's cross-field rules are thresholds (`tardis` needs hidden_size >= 4, an anneal needs
        steps > 0), so checking each range at its ends with every categorical value covers the space.
        """
        corners = [p.corners for p in self.space]
        if math.prod(len(c) for c in corners) > MAX_CORNER_CHECKS:
            return  # too many to check here; build_run still rejects a bad combination per trial
        paths = [p.path for p in self.space]
        for values in itertools.product(*corners):
            params = dict(zip(paths, values))
            try:
                overrides.replace(self.model, params)
            except ConfigError as e:
                shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
                raise ConfigError(f"space: the combination {shown} is invalid ({e})") from None


#: The name the search format had before ablations shared its base.
StudySpec = SearchSpec


# ---------------------------------------------------------------- loading


def load_spec(path: str | Path) -> SearchSpec:
    """Read and validate a study spec; every problem is one `ConfigError` line naming file and key."""
    return parse_spec(read_spec_text(path), str(path))


def parse_spec(text: str, source: str) -> SearchSpec:
    """Parse and validate spec `text`; `source` (the file name) starts every error message."""
    return load(SearchSpec, text, source)


def _resolve_search(search: SearchConfig, seed: int, train) -> SearchConfig:
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
        require(min_resource <= train.steps, "search.min_resource",
                f"`min_resource <= train.steps` must hold, got min_resource={min_resource}, train.steps={train.steps}")
    return dataclasses.replace(search, **resolved) if resolved else search


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


def _param(path: str, table: Any, where: str) -> Param:
    overrides.check_path(path, where, noun="parameter", unit="trial")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table like {{ choices = [...] }} or {{ low = ..., high = ... }}, "
                          f"got {table!r}")
    refuse_unknown_keys(table, PARAM_KEYS, where)
    hint = SEARCHABLE[path]
    if "choices" in table:
        extra = [k for k in table if k != "choices"]
        if extra:
            raise ConfigError(f"{where}: '{extra[0]}' cannot be combined with choices (give choices, or low/high)")
        return _categorical(path, table["choices"], hint, where)
    if "low" not in table or "high" not in table:
        raise ConfigError(f"{where}: needs choices = [...], or both low and high")
    if allowed_values(hint) is not None:
        raise ConfigError(f"{where}: takes one of {', '.join(map(repr, allowed_values(hint)))}; use "
                          f"choices = [...] instead of a range")
    return _range(path, table, hint, where)


def _categorical(path: str, choices: Any, hint: Any, where: str) -> Param:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
    allowed = allowed_values(hint)
    for value in choices:
        if allowed is not None and not is_allowed(value, allowed):
            raise ConfigError(f"{where}: {not_allowed(value, allowed, what='an allowed value')}")
    values = tuple(value if allowed else coerce(hint, value, f"{where}: choice") for value in choices)
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: choices repeat a value: {list(values)!r}")
    if len(values) == 1:
        raise ConfigError(f"{where}: a single choice {values[0]!r} is not a search; set it in [model] instead")
    return Param(path=path, choices=values)


def _range(path: str, table: Mapping, hint: Any, where: str) -> Param:
    low, high = coerce(hint, table["low"], f"{where}: low"), coerce(hint, table["high"], f"{where}: high")
    step = None if table.get("step") is None else coerce(hint, table["step"], f"{where}: step")
    log = coerce(bool, table.get("log", False), f"{where}: log")
    if hint is int and step is None:
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
    return Param(path=path, low=low, high=high, step=step, log=log)


# ---------------------------------------------------------------- runs of a study


def build_run(spec: SearchSpec, params: Mapping[str, object], seed: int) -> RunConfig:
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
        model = overrides.apply(spec.model, params)
    except ConfigError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        raise ConfigError(f"study '{spec.name}': invalid combination {shown}: {e}") from None
    return spec.run(model, seed)


def trial_seed(spec: SearchSpec, config_id: int, replicate: int) -> int:
    """The run seed of replicate `replicate` of configuration `config_id` (stable across processes)."""
    return derive_seed(spec.seed, TRIAL, config_id, replicate)


def grid_space(spec: SearchSpec) -> dict[str, list]:
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


def grid_size(spec: SearchSpec) -> int | None:
    """The number of grid points when the sampler is grid, else None."""
    if spec.search.sampler != "grid":
        return None
    return math.prod(len(v) for v in grid_space(spec).values())


# ---------------------------------------------------------------- identity


def resolved_mapping(spec: SearchSpec) -> dict[str, Any]:
    """The resolved spec as plain JSON-able values (what a study row stores)."""
    return to_mapping(spec)


def spec_hash(spec: SearchSpec | str | Mapping, source: str = "<spec>") -> str:
    """The study's digest (`armin.spec.base.spec_digest`) of the resolved spec.

    Takes a `SearchSpec`, the spec's TOML text (parsed with `source` for error messages) or a stored
    resolved spec (its JSON, parsed). Whitespace, comments, key order and omitted-but-defaulted
    values do not change it; any resolved value does.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec, source)
    return spec_digest(SearchSpec, spec if isinstance(spec, Mapping) else to_mapping(spec))


__all__ = ["MAX_CORNER_CHECKS", "MEDIAN_STARTUP_TRIALS", "Param", "SEARCHABLE", "SearchConfig", "SearchSpec",
           "StudySpec", "build_run", "grid_size", "grid_space", "load_spec", "parse_space", "parse_spec",
           "resolved_mapping", "spec_hash", "trial_seed"]
