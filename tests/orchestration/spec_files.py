"""Writing spec-shaped dicts as TOML files, shared by the orchestration tests."""

import json
from pathlib import Path


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


def dump(data: dict) -> str:
    """A small TOML writer for spec-shaped data: top-level scalars, then one table per section."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, data: dict | str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else dump(data))
    return path
