"""What every spec format shares: the header, the fixed run settings, the objective and resources.

`SearchSpec` (armin.spec.search) and `AblationSpec` (armin.spec.ablation) extend `BaseSpec`; both are
built by `armin.config.from_mapping`, so a key's shape (unknown, missing, type, choices) is checked in
one place, and each cross-section rule below exists once for both formats. The metric rules read the
task and model classes (`Task.recorded_metrics`, `ModelConfig.probe_metrics`), never a table here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armin.config import OMIT_DEFAULT, Source, digest, dumps, from_mapping, not_allowed, require, to_mapping
from armin.errors import ConfigError
from armin.model.config import MEMORY_PROBES, ModelConfig
from armin.tasks import TaskField, task_class, task_configs
from armin.training.config import OptimizerConfig, RunConfig, TrainConfig

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 100  # characters; a name becomes a folder (reports/NAME) and Ray/Optuna labels
MIN_MEMORY_GB = 0.0625  # resources.memory_gb: below 64 MiB not even the smallest model and its batches fit


def require_max_retries(value: int) -> None:
    """`max_retries` (a search's or an ablation's): re-runs of a trial whose worker died unexplained."""
    require(value >= 0, "max_retries", f"must be >= 0, got {value}")


def known_metrics() -> dict[str, str | None]:
    """Every metric some run can record, and the direction it must be optimised in (None: either)."""
    out: dict[str, str | None] = {}
    for config in task_configs():
        out |= task_class(config).recorded_metrics()
    return out | {probe: None for probe in MEMORY_PROBES}


# ---------------------------------------------------------------- sections


@dataclass(frozen=True, kw_only=True)
class Header:
    """What names a study: the database key, the question it answers, and the seed everything derives from."""

    name: str  # [A-Za-z0-9_.-], at most MAX_NAME_LENGTH characters
    goal: str  # one line
    seed: int  # every run seed derives from it

    def __post_init__(self) -> None:
        require(NAME_PATTERN.fullmatch(self.name) is not None, "name",
                f"{self.name!r} must be letters, digits, '_', '.' or '-' (starting with a letter or digit)")
        require(len(self.name) <= MAX_NAME_LENGTH, "name",
                f"at most {MAX_NAME_LENGTH} characters, got {len(self.name):,} ({self.name[:20]}...)")
        require(bool(self.goal.strip()) and "\n" not in self.goal.strip(), "goal", "must be one non-empty line")
        require(self.seed >= 0, "seed", f"expected an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: `metric` at the run's last evaluation."""

    metric: str  # one of `known_metrics()`; which ones a spec may use depends on its task and models
    direction: typing.Literal["minimize", "maximize"]

    def __post_init__(self) -> None:
        known = known_metrics()
        require(self.metric in known, "metric", not_allowed(self.metric, known))


@dataclass(frozen=True)
class Resources:
    """What one trial reserves from the cluster."""

    cpus: float = 1.0  # > 0, fractions allowed
    gpus: float = 0.0  # >= 0, fractions allowed (0.25: four trials share a GPU)
    # GiB the trial may allocate (host memory; reserved from Ray's `memory` resource too). None: the
    # trial's share of its node by CPUs, so trials that fit by CPU fit in memory (armin.orchestration.memory).
    # Added after studies were stored: unset, it is left out of the hash, so theirs stay valid.
    memory_gb: float | None = field(default=None, metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        require(math.isfinite(self.cpus) and self.cpus > 0, "cpus", f"must be > 0, got {self.cpus}")
        require(math.isfinite(self.gpus) and self.gpus >= 0, "gpus", f"must be >= 0, got {self.gpus}")
        require(self.memory_gb is None or self.memory_gb >= MIN_MEMORY_GB, "memory_gb",
                f"must be >= {MIN_MEMORY_GB} (GiB a trial may allocate), got {self.memory_gb}")

    @property
    def memory_bytes(self) -> int | None:
        """What the trial reserves from Ray's `memory` resource; None when unset (no reservation)."""
        return None if self.memory_gb is None else int(self.memory_gb * 2**30)


@dataclass(frozen=True, kw_only=True)
class BaseSpec(Header):
    """The run settings every trial of a study shares, and the rules between them.

    Subclasses say which models the study may train (`lstm_models`) for the memory-probe rule.
    """

    task: TaskField
    model: ModelConfig = field(default_factory=ModelConfig)  # fixed values; a study overrides them per trial
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # identical for every trial
    train: TrainConfig = field(default_factory=TrainConfig)  # identical for every trial
    objective: Objective
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_metric()
        self._check_gpus()

    def lstm_models(self) -> Iterable[str]:
        """Descriptions of the memory-less models this spec may train (none recorded a memory probe)."""
        return ["arch = 'lstm'"] if not self.model.has_memory else []

    def _check_metric(self) -> None:
        metric, recorded = self.objective.metric, task_class(self.task).recorded_metrics()
        if metric not in recorded and metric not in MEMORY_PROBES:
            owners = sorted(c.name for c in task_configs() if metric in task_class(c).recorded_metrics())
            raise ConfigError(f"objective.metric: {metric!r} is recorded only by {', '.join(owners)}; task "
                              f"{self.task.name!r} records {', '.join(sorted(recorded, key=_headline_first))}")
        if metric in MEMORY_PROBES:
            lstm = next(iter(self.lstm_models()), None)
            require(lstm is None, "objective.metric",
                    f"{metric!r} is a memory probe, not recorded for {lstm} (a model without memory); train "
                    f"only models with memory (arch = 'armin') or choose another metric")
        expected = known_metrics()[metric]
        require(expected is None or self.objective.direction == expected, "objective.direction",
                f"{metric} must be {expected}d, got {self.objective.direction!r}")

    def _check_gpus(self) -> None:
        device, gpus = self.train.device, self.resources.gpus
        require(not device.startswith("cuda") or gpus > 0, "resources.gpus",
                f"train.device is {device!r} but gpus = 0; a trial would see no GPU (reserve a share, e.g. "
                f"gpus = 0.25)")
        require(device.startswith("cuda") or gpus == 0, "resources.gpus",
                f"{gpus} reserved but train.device is {device!r}; set gpus = 0 or device = \"cuda\"")

    def run(self, model: ModelConfig, seed: int) -> RunConfig:
        """One run of this spec: `model` under the shared task, optimizer and budget."""
        return RunConfig(task=self.task, model=model, optimizer=self.optimizer, train=self.train, seed=seed)


def _headline_first(metric: str) -> tuple[bool, str]:
    return metric in ("eval_loss", "train_loss"), metric


# ---------------------------------------------------------------- files and stored specs


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


def stored_json(spec: BaseSpec) -> str:
    """The resolved spec as a study row stores it (`armin.config.dumps`)."""
    return dumps(to_mapping(spec))


def spec_digest(cls: type[BaseSpec], resolved: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> str:
    """The one hash of a resolved spec, live (`to_mapping`) or stored (its JSON, parsed): `armin.config.digest`.

    It hashes resolved values, defaults included (a default added to `ModelConfig` changes it: that the
    old code behaved as the new default is not known, so the stored study is refused naming the key),
    except fields marked `OMIT_DEFAULT` (e.g. `resources.memory_gb`), whose default is the old behaviour.
    """
    return digest(cls, resolved, keys)


def parse_stored(cls: type[BaseSpec], spec_json: str | Mapping[str, Any], where: str = "stored spec"):
    """A stored resolved spec (a study row's `spec_json`) rebuilt as its dataclass, every rule rechecked."""
    data = json.loads(spec_json) if isinstance(spec_json, str) else spec_json
    return from_mapping(cls, data, Source(where))


def load(cls: type[BaseSpec], text: str, source: str):
    """Spec `text` (TOML) as `cls`, every problem one `ConfigError` line starting with `source`."""
    return from_mapping(cls, parse_toml(text, source), Source(source))


__all__ = ["BaseSpec", "Header", "MAX_NAME_LENGTH", "MIN_MEMORY_GB", "NAME_PATTERN", "Objective", "Resources",
           "known_metrics", "load", "parse_stored", "parse_toml", "read_spec_text", "spec_digest", "stored_json"]
