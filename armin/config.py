"""Build frozen config dataclasses from plain mappings (CLI flags, TOML, JSON), validating at the edge.

Every problem becomes one `ConfigError` line naming where it is (`spec.toml: model.cell`), what was
given and what is allowed. Dataclasses check their own cross-field rules in `__post_init__` with
`require`, and the location is prefixed here. A float field takes finite numbers only: `inf` and
`nan` (TOML literals, `--lr inf`) are refused here, once for every config.

This module is the one place a config or spec rule about *shape* lives: unknown keys, missing keys
(with the field's `help` metadata, if any), types (an integer is never a bool), Literal choices and
tagged unions (a union of dataclasses chosen by `name`, optionally from a live registry via
`Tagged`). Identity lives here too: `dumps` is the one JSON serialisation and `digest` the one hash,
over `canonical`, which drops only the fields marked `OMIT_DEFAULT` when they hold their default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, Union

from armin.errors import ConfigError

T = TypeVar("T")


class Source(str):
    """A file name as the root of a location: its keys follow `: ` (`spec.toml: model.cell`), not `.`."""


def child(where: str, key: str) -> str:
    """The location of `key` inside `where`."""
    return f"{where}: {key}" if isinstance(where, Source) else f"{where}.{key}"


@dataclasses.dataclass(frozen=True)
class Tagged:
    """`Annotated[Union[...], Tagged(options)]`: a tagged union whose members come from `options()` at parse
    time (a registry), so a member registered later (a new task) parses without editing the Union."""

    options: Any  # () -> iterable of dataclasses, each with a `name: Literal[...]` field


#: Field metadata: the canonical form (`canonical`, `digest`) omits this field while it holds its default.
#: For a field added after specs were stored whose default *is* the old behaviour: old and new hash alike.
OMIT_DEFAULT = {"canonical": "omit_default"}


def require(ok: bool, key: str, message: str) -> None:
    """Raise a `ConfigError` for `key` unless `ok` (used by `__post_init__` validators)."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def not_allowed(value: Any, allowed: Any, *, what: str = "allowed") -> str:
    """The message for a value outside a finite set (Literal fields, metrics, a search's choices)."""
    return f"{value!r} is not {what} (choose from {', '.join(map(repr, allowed))})"


def is_integer(value: Any) -> bool:
    """An int that is not a bool (TOML's `true` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_allowed(value: Any, allowed: tuple) -> bool:
    """`value` is one of `allowed`, a bool only where the allowed values are bools (0 is not False)."""
    return value in allowed and isinstance(value, bool) == isinstance(allowed[0], bool)


def refuse_unknown_keys(data: Mapping, allowed: typing.Sequence[str], where: str) -> None:
    """One `ConfigError` for the first key of `data` not in `allowed`."""
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(allowed)})")


def from_mapping(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys, missing keys, wrong types and bad values.

    A field with `metadata={"parse": fn}` is built by `fn(value, location)` instead of by its type (a
    file form that differs from the stored one, e.g. a study's `[space]`); `metadata={"help": ...}`
    says what a missing required key is for.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    refuse_unknown_keys(data, [f.name for f in fields], where)
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for f in required:
        if f.name not in data:
            sections = [r for r in required if _is_section(hints[r.name], r)]
            raise ConfigError(_missing(f, hints[f.name], sections, where))
    kwargs = {}
    for k, v in data.items():
        field = next(f for f in fields if f.name == k)
        parse = field.metadata.get("parse")
        kwargs[k] = parse(v, child(where, k)) if parse else coerce(hints[k], v, child(where, k))
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(child(where, str(e))) from None


def _is_section(hint: Any, f: dataclasses.Field | None = None) -> bool:
    """A field written as a TOML table: a dataclass, a union of dataclasses, or marked `section`."""
    if f is not None and f.metadata.get("section"):
        return True
    hint = _strip(hint)
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return all(dataclasses.is_dataclass(o) for o in options)


def _strip(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _missing(f: dataclasses.Field, hint: Any, sections: list[dataclasses.Field], where: str) -> str:
    if f.metadata.get("help"):
        return f"{child(where, f.name)}: missing ({f.metadata['help']})"
    if _is_section(hint, f):
        return f"{where}: [{f.name}]: missing section (required: {', '.join(s.name for s in sections)})"
    allowed = allowed_values(_strip(hint))
    choose = f" (choose from {', '.join(map(repr, allowed))})" if allowed else ""
    return f"{child(where, f.name)}: missing, and there is no default{choose}"


def allowed_values(hint: Any) -> tuple | None:
    """The finite set of values a field takes (Literal, bool), or None for numbers and strings."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if hint is bool:
        return (False, True)
    return None


def to_mapping(obj: Any) -> dict[str, Any]:
    """The inverse of `from_mapping`: plain JSON/TOML-able values."""
    return dataclasses.asdict(obj)


def dumps(value: Any) -> str:
    """The one JSON serialisation of configs and specs: sorted keys, no whitespace (stored and hashed alike)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def canonical(cls: type, data: Any) -> Any:
    """`data` (a plain mapping of dataclass `cls`, as `to_mapping` gives or as stored) with every field marked
    `OMIT_DEFAULT` removed while it holds its default, in nested dataclasses too.

    Every other field stays, defaulted or not: a field added with a default is *not* presumed to be what
    older code did (the stored study is refused, naming the key, until `--force`), unless it says so.
    """
    if not isinstance(data, Mapping) or not dataclasses.is_dataclass(cls):
        return data
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        f = next((f for f in dataclasses.fields(cls) if f.name == key), None)
        if f is None:
            out[key] = value
            continue
        if f.metadata.get("canonical") == "omit_default" and f.default is not dataclasses.MISSING \
                and value == f.default:
            continue
        options = [a for a in typing.get_args(hints[key]) if a is not type(None)] or [hints[key]]
        nested = options[0] if len(options) == 1 and dataclasses.is_dataclass(options[0]) else None
        out[key] = canonical(nested, value) if nested else value
    return out


def digest(cls: type, data: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> str:
    """sha256 of `dumps(canonical(cls, data))`, restricted to the top-level `keys` if given (a contract).

    Hashing the canonical *content*, the same for a live spec (`to_mapping`) and a stored one (its JSON,
    parsed), lets a stored study be recognised by recomputing its digest from what it stored.
    """
    content = canonical(cls, data)
    if keys is not None:
        content = {k: v for k, v in content.items() if k in keys}
    return hashlib.sha256(dumps(content).encode()).hexdigest()


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` checked (and converted: lists to tuples, ints to floats) against type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        tagged = next((m for m in hint.__metadata__ if isinstance(m, Tagged)), None)
        return _coerce_tagged(list(tagged.options()), value, where) if tagged else coerce(args[0], value, where)
    if origin is Literal:
        if not is_allowed(value, args):
            raise ConfigError(f"{where}: {not_allowed(value, args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if all(dataclasses.is_dataclass(a) for a in options) and len(options) > 1:
            return _coerce_tagged(options, value, where)
        return coerce(options[0], value, where) if len(options) == 1 else value
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return tuple(coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {_describe(value)}")
        return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if not is_integer(value):
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
        raise ConfigError(f"{where}.name: {not_allowed(value['name'], by_name)}")
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
