"""Model overrides by dotted path (`model.cell`, `model.temperature.start`): what studies search and
ablations toggle. The task, optimizer and budget are fixed by design, so only these paths exist."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from armin.config import from_mapping, to_mapping
from armin.errors import ConfigError
from armin.model.config import ModelConfig


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


#: Every overridable path and its type: the fields of `ModelConfig` and its `TemperatureSchedule`.
SEARCHABLE: dict[str, Any] = _leaf_fields(ModelConfig, "model")


def check_path(path: str, where: str, *, noun: str, unit: str) -> None:
    """Refuse a path that is not a model field: `noun` names it (parameter, component), `unit` what shares
    everything else (trial, arm)."""
    if path in SEARCHABLE:
        return
    section, searchable = path.split(".")[0], ", ".join(SEARCHABLE)
    if section in ("task", "optimizer", "train"):
        raise ConfigError(f"{where}: [{section}] is fixed by design (identical for every {unit}, so {unit}s "
                          f"differ only in the model); searchable: {searchable}")
    if path in ("model", "model.temperature"):
        raise ConfigError(f"{where}: is a table; search its fields (searchable: {searchable})")
    raise ConfigError(f"{where}: unknown {noun} (searchable: {searchable})")


def apply(model: ModelConfig, params: Mapping[str, object]) -> ModelConfig:
    """`model` with `params` (dotted paths) set, every value type-checked by `from_mapping` and validated by
    the dataclasses' own rules; a ConfigError names the field (`model.hidden_size: ...`)."""
    data = to_mapping(model)
    for path, value in params.items():
        parts = path.split(".")[1:]
        node = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return from_mapping(ModelConfig, data, "model")


def replace(model: ModelConfig, params: Mapping[str, object]) -> ModelConfig:
    """`apply` for values whose types are already checked: only the dataclasses' own validation (fast)."""
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


def try_apply(model: ModelConfig, params: Mapping[str, object], message: str) -> ModelConfig:
    """`apply`, its error wrapped as `message (error)`."""
    try:
        return apply(model, params)
    except ConfigError as e:
        raise ConfigError(f"{message} ({e})") from None
