"""Build frozen config dataclasses from plain mappings (CLI flags, TOML, JSON), validating at the edge.

Every problem becomes one `ConfigError` line naming where it is (`spec.toml: model.cell`), what was
given and what is allowed. Dataclasses check their own cross-field rules in `__post_init__` with
`require`, and the location is prefixed here. A float field takes finite numbers only: `inf` and
`nan` (TOML literals, `--lr inf`) are refused here, once for every config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from armin.errors import ConfigError

T = TypeVar("T")


def require(ok: bool, key: str, message: str) -> None:
    """Raise a `ConfigError` for `key` unless `ok` (used by `__post_init__` validators)."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def from_mapping(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys, wrong types and bad values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(names)})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from None


def to_mapping(obj: Any) -> dict[str, Any]:
    """The inverse of `from_mapping`: plain JSON/TOML-able values."""
    return dataclasses.asdict(obj)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            allowed = ", ".join(map(repr, args))
            raise ConfigError(f"{where}: {value!r} is not allowed (choose from {allowed})")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if all(dataclasses.is_dataclass(a) for a in options) and len(options) > 1:
            return _coerce_tagged(options, value, where)
        return _coerce(options[0], value, where) if len(options) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):  # inf/nan pass every `> 0` check below them, then train on garbage
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    return value


def _coerce_tagged(options: list[type], value: Any, where: str) -> Any:
    """A union of dataclasses is chosen by its `name` field (e.g. the task configs)."""
    by_name = {typing.get_args(typing.get_type_hints(o)["name"])[0]: o for o in options}
    if not isinstance(value, Mapping) or "name" not in value:
        raise ConfigError(f"{where}: needs a 'name' (one of {', '.join(by_name)})")
    if value["name"] not in by_name:
        raise ConfigError(f"{where}.name: {value['name']!r} is not allowed (choose from {', '.join(map(repr, by_name))})")
    return from_mapping(by_name[value["name"]], value, where)


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Every dotted path whose value differs between two plain mappings, as `path: old -> new`.

    For messages and the spec history: a refusal or a version that says *which* key changed, not
    two hashes. A key present on one side only shows `(none)` on the other.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            out += changed_paths(old.get(key, _MISSING), new.get(key, _MISSING), path)
        return out
    if old == new:
        return []
    show = lambda v: "(none)" if v is _MISSING else repr(v)  # noqa: E731
    return [f"{prefix or '(root)'}: {show(old)} -> {show(new)}"]


_MISSING = object()


def summarize_changes(changes: list[str], *, limit: int = 3, width: int = 120) -> str:
    """`changed_paths` as one line: the first `limit` changes (each cut to `width`), then how many more."""
    if not changes:
        return "no resolved value changed"
    shown = [c if len(c) <= width else c[:width - 3] + "..." for c in changes[:limit]]
    more = len(changes) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "")
