"""Designs: which trials a study consists of, as pure functions of the spec and the database's rows.
The driver runs either kind the same way; a search's design also names its sampler.

- `SearchDesign`: configurations come from its sampler (`armin.orchestration.sampler`, Optuna's
  ask-and-tell), each trained on a few seeds; evaluations are reported so the pruner can stop a trial.
- `AblationDesign`: arms x seeds from an ablation spec. No sampler and no pruner: stopping some
  arms early would censor the comparison. With seeds on demand
  (`spec.sequential`) the slots grow by rounds: which seeds each arm still needs is decided by
  `armin.stats.plan_seeds` from the outcomes in the database alone, so a resumed driver plans
  exactly what the one before it would have.

A *slot* is one (configuration, seed) to run; the driver keys slots by (config_id, seed).
`Plan`, `SearchPlan` and `AblationPlan` are the older names of `Design` and its two kinds.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pandas as pd

from armin.config import to_mapping
from armin.orchestration.sampler import OptunaSampler
from armin.spec import stored_digest
from armin.spec.ablation import CONTRACT_SECTIONS, AblationSpec, build_arm_run, contract_hash
from armin.spec.base import stored_json
from armin.spec.search import SearchSpec, build_run, spec_hash, trial_seed
from armin.stats import plan_seeds
from armin.storage import Trial, TrialState
from armin.storage.failures import retry_due
from armin.storage.outcomes import final_outcomes
from armin.training import RunConfig


@dataclass
class Slot:
    """One (configuration, replicate) to run, and which attempt this is."""

    config_id: int
    replicate: int
    params: dict
    seed: int
    arm: str | None = None
    attempt: int = 1
    retry_of_id: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return self.config_id, self.seed


class Design(ABC):
    kind: str  # "search" | "ablation": the study row's kind
    grows: bool = False  # True: `expected_slots` asks for more as outcomes arrive (seeds on demand)

    def __init__(self, spec):
        self.spec = spec
        self.name, self.goal = spec.name, spec.goal
        self.resources, self.objective = spec.resources, spec.objective

    @property
    @abstractmethod
    def max_retries(self) -> int: ...

    @property
    @abstractmethod
    def total(self) -> int:
        """Results the design asks for."""

    @abstractmethod
    def digest(self) -> str:
        """What must not change between runs of one study (else `--force`)."""

    def spec_json(self) -> str:
        return stored_json(self.spec)

    def stored_digest(self, spec_json: str) -> str:
        """`digest` of a stored spec (a study row's `spec_json`), recomputed from its content."""
        return stored_digest(self.kind, spec_json)

    #: What `digest` covers, in words, for the spec-changed refusal.
    contract_name = "spec"

    def contract(self, resolved: dict) -> dict:
        """The part of a resolved spec (`spec_json`, parsed) that `digest` covers: a refusal names its changes."""
        return resolved

    def retryable(self, history: list[tuple[TrialState, str | None]]) -> bool:
        """Whether a slot's latest attempt is run again (`armin.storage.failures.retry_due`, this design's budget)."""
        return retry_due(history, max_retries=self.max_retries)

    def reconcile(self, rows: list[Trial]) -> dict[str, str]:
        """Relabel attempts (in place, in the caller's session) whose configuration the spec now names
        differently; returns {old name: new name}. A search's configurations have no names."""
        return {}

    @abstractmethod
    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        """Every slot the study must have, given the attempts already in the database."""

    def describe_slots(self, keys: set[tuple[int, int]]) -> str | None:
        """A few words on how far a growing design has grown (slot keys planned so far), for the progress line."""
        return None

    @abstractmethod
    def build_run(self, slot: Slot) -> RunConfig: ...

    @abstractmethod
    def sampler(self) -> OptunaSampler | None:
        """What proposes configurations beyond `expected_slots` and prunes; None: the design fixes them all."""


class SearchDesign(Design):
    kind = "search"

    @property
    def max_retries(self) -> int:
        return self.spec.search.max_retries

    @property
    def total(self) -> int:
        return self.spec.search.n_trials * self.spec.search.seeds_per_config

    def digest(self) -> str:
        return spec_hash(self.spec)

    def slots_for(self, config_id: int, params: dict) -> list[Slot]:
        """A configuration's seeds, replicate 0 first."""
        return [Slot(config_id, rep, params, trial_seed(self.spec, config_id, rep))
                for rep in range(self.spec.search.seeds_per_config)]

    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        params = {row.config_id: json.loads(row.params_json) for row in rows}
        return [slot for c, p in sorted(params.items()) for slot in self.slots_for(c, p)]

    def build_run(self, slot: Slot) -> RunConfig:
        return build_run(self.spec, slot.params, slot.seed)

    def sampler(self) -> OptunaSampler:
        return OptunaSampler(self)


class AblationDesign(Design):
    kind = "ablation"

    def __init__(self, spec: AblationSpec):
        super().__init__(spec)
        self.grows = spec.sequential is not None
        self.ids: dict[str, int] = {}  # arm name -> config_id, set by `expected_slots`

    @property
    def max_retries(self) -> int:
        return self.spec.max_retries

    @property
    def total(self) -> int:
        """Arms x seeds; with seeds on demand the most it may run (arms x max_seeds)."""
        return len(self.spec.arms) * len(self.spec.seeds)

    def digest(self) -> str:
        return contract_hash(self.spec)

    contract_name = "task, model, optimizer, training, seed or objective"

    def contract(self, resolved: dict) -> dict:
        return {key: value for key, value in resolved.items() if key in CONTRACT_SECTIONS}

    def reconcile(self, rows: list[Trial]) -> dict[str, str]:
        """An arm is its model, not its name: rows of a name the spec no longer has take the name of the
        one arm with the same resolved model (by value), if that arm has no rows of its own.

        Adding a factor renames every arm (`addressing=hidden` becomes `addressing=hidden, cell=armin`);
        without this its finished runs were orphaned and run again. Rows of an arm removed from the
        spec, or matching no arm or several, keep their name (and are no slot of this spec).
        """
        by_model: dict[str, list[str]] = {}
        for arm in self.spec.arms:
            by_model.setdefault(self.model_key(to_mapping(build_arm_run(self.spec, arm, 0).model)), []).append(arm.name)
        current, named = {a.name for a in self.spec.arms}, {row.arm for row in rows}
        renames: dict[str, str] = {}
        for row in rows:
            old = row.arm
            if old is None or old in current:
                continue
            if old not in renames:
                match = by_model.get(self.model_key(json.loads(row.config_json)["model"]), [])
                if len(match) != 1 or match[0] in named or match[0] in renames.values():
                    continue
                renames[old] = match[0]
            row.arm = renames[old]
        return renames

    @staticmethod
    def model_key(model: dict) -> str:
        """A resolved model as canonical JSON (tuples and lists alike), to compare arms by value."""
        return json.dumps(model, sort_keys=True)

    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        """Arms keep their config_id by name across spec edits (after `reconcile`); new arms get the next ids.

        Fixed seeds: every arm x every seed. Seeds on demand: every (arm, candidate seed) already
        in the database, plus the next round `seeds_to_run` asks for.
        """
        ids = {row.arm: row.config_id for row in rows}
        next_id = max(ids.values(), default=-1) + 1
        for arm in self.spec.arms:
            if arm.name not in ids:
                ids[arm.name], next_id = next_id, next_id + 1
        self.ids = ids
        chosen = self.seeds_to_run(rows) if self.grows else {a.name: range(len(self.spec.seeds)) for a in self.spec.arms}
        first = sorted(self.spec.arms, key=lambda a: a.name != self.spec.baseline)  # every comparison needs it
        return [Slot(ids[arm.name], rep, dict(arm.overrides), self.spec.seeds[rep], arm=arm.name)
                for arm in first for rep in chosen[arm.name]]

    def outcomes(self, rows: list[Trial]) -> tuple[pd.DataFrame, dict[str, set[int]]]:
        """The finished slots as `armin.stats` outcomes, and every slot's replicate index per arm.

        Read by `final_outcomes`, as the report reads them (a FAILED slot is an outcome at once, a
        LOST one once its retries are spent; one queued, running or due for a retry is none). `seed`
        is the seed's index in the candidate order, so the statistics see the pairs in run order.
        """
        arms, index = {a.name for a in self.spec.arms}, {seed: i for i, seed in enumerate(self.spec.seeds)}
        mine = [row for row in sorted(rows, key=lambda r: r.number) if row.arm in arms and row.seed in index]
        scheduled: dict[str, set[int]] = {a.name: set() for a in self.spec.arms}
        for row in mine:
            scheduled[row.arm].add(index[row.seed])
        table = pd.DataFrame([{"arm": r.arm, "seed": r.seed, "state": r.state.name,
                               "failure_reason": r.failure_reason, "objective": r.objective} for r in mine],
                             columns=["arm", "seed", "state", "failure_reason", "objective"])
        done = final_outcomes(table, self.spec.seeds, max_retries=self.max_retries)
        return done[["arm", "replicate", "value", "state"]].rename(columns={"replicate": "seed"}), scheduled

    def seeds_to_run(self, rows: list[Trial]) -> dict[str, list[int]]:
        """Per arm, the replicate indices it must have: those scheduled, then the next round's.

        `plan_seeds` says how many more runs each arm needs beyond its finished ones; those not
        already scheduled are the next unscheduled seeds in the candidate order, so every arm runs
        a prefix of the candidates and each new run has its pair.
        """
        s, design = self.spec, self.spec.sequential
        df, scheduled = self.outcomes(rows)
        need = plan_seeds(df, baseline=s.baseline, direction=s.objective.direction, rope=s.rope,
                          max_seeds=design.max_seeds, first_round=design.first_round, step=design.step,
                          arms=[a.name for a in s.arms])
        ran = df.groupby("arm").size().to_dict()
        out = {}
        for arm in s.arms:
            mine = scheduled[arm.name]
            more = ran.get(arm.name, 0) + need.get(arm.name, 0) - len(mine)
            fresh = [i for i in range(len(s.seeds)) if i not in mine][:max(more, 0)]
            out[arm.name] = sorted(mine | set(fresh))
        return out

    def describe_slots(self, keys: set[tuple[int, int]]) -> str | None:
        """`round 2/5 | seeds per arm: A 15; B 10 (max 30)`: the round of the arm planned furthest."""
        if not self.grows:
            return None
        design, arm_of, seeds = self.spec.sequential, {i: name for name, i in self.ids.items()}, set(self.spec.seeds)
        counts = {a.name: 0 for a in self.spec.arms}
        for config_id, seed in keys:
            if arm_of.get(config_id) in counts and seed in seeds:
                counts[arm_of[config_id]] += 1
        furthest = max(counts.values(), default=0)
        current = 1 + sum(point < furthest for point in design.schedule)
        shown = "; ".join(f"{arm} {n}" for arm, n in counts.items())  # arm names may hold commas
        return f"round {current}/{design.looks} | seeds per arm: {shown} (max {design.max_seeds})"

    def build_run(self, slot: Slot) -> RunConfig:
        return build_arm_run(self.spec, self.spec.arm(slot.arm), slot.seed)

    def sampler(self) -> None:
        return None  # every arm and seed is fixed by the spec (or planned from outcomes): no sampler, no pruner


Plan, SearchPlan, AblationPlan = Design, SearchDesign, AblationDesign  # the older names, still imported
