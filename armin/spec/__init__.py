"""Study specs, one layer for both formats.

- `base`: what every spec shares (`Header`, `BaseSpec`: task, model, optimizer, train, objective,
  resources), the cross-section rules, reading files, the stored form and the one digest.
- `search`: `SearchSpec` (`[search]`, `[space]`) and the search space.
- `sampling`: the Optuna adapter (sampler, pruner, suggest).
- `ablation`: `AblationSpec` (`[factors]`, `[extra_arms]`, `[design]`).
- `overrides`: the model paths a study searches and an ablation toggles.

Parsing is `armin.config.from_mapping` of the format's dataclass, so every shape rule and message
lives once, in `armin.config`; `parse_stored` rebuilds a study row's stored spec as its dataclass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from armin.spec.ablation import AblationSpec, contract_hash
from armin.spec.base import BaseSpec, parse_stored
from armin.spec.search import SearchSpec, spec_hash

#: A study row's `kind` -> the dataclass its spec_json rebuilds.
KINDS: dict[str, type[BaseSpec]] = {"search": SearchSpec, "ablation": AblationSpec}


def stored_spec(kind: str, spec_json: str | Mapping[str, Any], where: str = "stored spec") -> BaseSpec:
    """A study row's resolved spec (`kind`, `spec_json`) as its dataclass: what reports read."""
    return parse_stored(KINDS[kind], spec_json, where)


def stored_digest(kind: str, spec_json: str | Mapping[str, Any]) -> str:
    """The digest a study of `kind` has over its stored resolved spec, recomputed from the content (so a
    study stored under an older serialisation of the hash is still recognised): a search's whole spec, an
    ablation's contract."""
    data = json.loads(spec_json) if isinstance(spec_json, str) else spec_json
    return (spec_hash if kind == "search" else contract_hash)(data)


__all__ = ["AblationSpec", "BaseSpec", "KINDS", "SearchSpec", "parse_stored", "stored_digest", "stored_spec"]
