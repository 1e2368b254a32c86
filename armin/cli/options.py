"""Command-line options generated from the config dataclasses, so flags and configs never drift.

Each field becomes `--field-name` with its type, its allowed values and, as help, the comment
written beside the field in the source. Parsed values are assembled into the nested mapping that
`armin.config.from_mapping` validates, and error locations are translated back to flag names.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import typing
from typing import Any, Literal

from armin.errors import ConfigError

_COMMENT = re.compile(r"^\s*(\w+)\s*:[^#]*#\s*(.+)$")


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """The trailing `# comment` of every field in `cls`'s source."""
    docs = {}
    for line in inspect.getsource(cls).splitlines():
        m = _COMMENT.match(line)
        if m:
            docs[m.group(1)] = m.group(2).strip()
    return docs


class OptionGroup:
    """The fields of one dataclass, exposed as flags; `path` is where they go in the run mapping."""

    def __init__(self, cls: type, path: tuple[str, ...], *, prefix: str = "", rename: dict[str, str] | None = None,
                 skip: tuple[str, ...] = ()):
        self.cls, self.path, self.prefix = cls, path, prefix
        self.rename, self.skip = rename or {}, skip
        self.flags: dict[str, str] = {}  # field name -> flag

    def add_to(self, parser: argparse.ArgumentParser, title: str) -> None:
        group = parser.add_argument_group(title)
        hints, docs = typing.get_type_hints(self.cls), field_help(self.cls)
        defaults = self.cls()
        for f in dataclasses.fields(self.cls):
            hint = hints[f.name]
            if f.name in self.skip or dataclasses.is_dataclass(hint):
                continue
            flag = "--" + self.rename.get(f.name, self.prefix + f.name).replace("_", "-")
            self.flags[f.name] = flag
            kwargs: dict[str, Any] = {"dest": self.dest(f.name), "default": None,
                                      "help": f"{docs.get(f.name, '')} (default: {getattr(defaults, f.name)})"}
            if typing.get_origin(hint) is Literal:
                kwargs |= {"choices": typing.get_args(hint), "metavar": "{" + ",".join(map(str, typing.get_args(hint))) + "}"}
            elif hint is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif hint in (int, float, str):
                kwargs |= {"type": hint, "metavar": hint.__name__.upper()}
            group.add_argument(flag, **kwargs)

    def dest(self, name: str) -> str:
        return "__".join([*self.path, name])

    def collect(self, args: argparse.Namespace, into: dict) -> None:
        """Put the flags the user gave into the nested mapping `into`."""
        for name in self.flags:
            value = getattr(args, self.dest(name))
            if value is not None:
                node = into
                for key in self.path:
                    node = node.setdefault(key, {})
                node[name] = value

    def locations(self) -> dict[str, str]:
        """Error location (`cli.model.hidden_size`) -> flag (`--hidden-size`)."""
        return {".".join(["cli", *self.path, n]): flag for n, flag in self.flags.items()}


def translate(error: ConfigError, groups: list[OptionGroup]) -> ConfigError:
    """Rewrite `cli.a.b: message` as `--flag: message`, longest location first."""
    text = str(error)
    for location, flag in sorted((kv for g in groups for kv in g.locations().items()), key=lambda kv: -len(kv[0])):
        if text.startswith(location + ":") or text.startswith(location + "."):
            return ConfigError(flag + text[len(location):])
    return ConfigError(text.replace("cli.", "", 1) if text.startswith("cli.") else text)


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` with value read as TOML (so 20 is an int, true a bool, 'x' a string)."""
    import tomllib

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--task-option: expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), raw
