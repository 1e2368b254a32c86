"""Plans: which trials a study consists of. The driver runs either kind the same way.

- `SearchPlan`: configurations come from Optuna (ask-and-tell), each trained on a few seeds;
  evaluations are reported so the spec's pruner can stop a trial.
- `AblationPlan`: a fixed list of arms x seeds from an ablation spec. No sampler and no pruner:
  stopping some arms early would censor the comparison. Failed trials are retried too.

A *slot* is one (configuration, seed) to run; the driver keys slots by (config_id, seed).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import optuna

from armin.config import to_mapping
from armin.orchestration.ablation_spec import AblationSpec, build_arm_run, contract_hash
from armin.orchestration.spec import StudySpec, build_run, make_pruner, make_sampler, spec_hash, suggest, trial_seed
from armin.storage import Trial, TrialState
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


class Plan(ABC):
    kind: str  # "search" | "ablation": the study row's kind
    retry_failed: bool  # re-run attempts that raised (ablations), or record them as final (searches)

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
        """Results the plan asks for."""

    @abstractmethod
    def digest(self) -> str:
        """What must not change between runs of one study (else `--force`)."""

    def spec_json(self) -> str:
        return json.dumps(to_mapping(self.spec), sort_keys=True, default=str)

    def open(self, db_url: str) -> None:
        """Connect to whatever the plan needs (Optuna's study in the same file)."""

    def cleanup_stale(self) -> None:
        """Close what a dead driver left open outside our tables."""

    @abstractmethod
    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        """Every slot the study must have, given the attempts already in the database."""

    def new_slot(self) -> tuple[Slot, object, list[Slot]] | None:
        """A fresh configuration beyond `expected_slots`: its first slot, its handle, its other seeds.

        None when the plan asks for nothing more.
        """
        return None

    def handle_for(self, slot: Slot) -> object:
        """The sampler-side handle of a slot launched again (a replicate or a retry)."""
        return None

    def report(self, handle, value: float, step: int) -> bool:
        """Record an intermediate value; True if the trial should be pruned."""
        return False

    def tell(self, handle, state: TrialState, value: float | None = None) -> None:
        """The attempt's outcome, for the sampler."""

    @abstractmethod
    def build_run(self, slot: Slot) -> RunConfig: ...

    def trial_id(self, handle) -> int | None:
        return None


class SearchPlan(Plan):
    kind, retry_failed = "search", False

    def __init__(self, spec: StudySpec):
        super().__init__(spec)
        self.n_configs = 0

    @property
    def max_retries(self) -> int:
        return self.spec.search.max_retries

    @property
    def total(self) -> int:
        return self.spec.search.n_trials * self.spec.search.seeds_per_config

    def digest(self) -> str:
        return spec_hash(self.spec)

    def open(self, db_url: str) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(storage=optuna.storages.RDBStorage(db_url), study_name=self.spec.name,
                                         sampler=make_sampler(self.spec), pruner=make_pruner(self.spec),
                                         direction=self.objective.direction, load_if_exists=True)

    def cleanup_stale(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        for _ in self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING]):
            self.study.tell(self.study.ask(), state=optuna.trial.TrialState.FAIL)

    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        params = {row.config_id: json.loads(row.params_json) for row in rows}
        self.n_configs = len(params)
        return [Slot(c, rep, p, trial_seed(self.spec, c, rep))
                for c, p in sorted(params.items()) for rep in range(self.spec.search.seeds_per_config)]

    def new_slot(self) -> tuple[Slot, object, list[Slot]] | None:
        if self.n_configs >= self.spec.search.n_trials:
            return None
        otrial = self.study.ask()
        params = suggest(otrial, self.spec)
        config_id, self.n_configs = self.n_configs, self.n_configs + 1
        slots = [Slot(config_id, rep, params, trial_seed(self.spec, config_id, rep))
                 for rep in range(self.spec.search.seeds_per_config)]
        return slots[0], otrial, slots[1:]

    def handle_for(self, slot: Slot) -> object:
        self.study.enqueue_trial(slot.params, skip_if_exists=False)
        return self.study.ask()

    def report(self, handle, value: float, step: int) -> bool:
        handle.report(value, step)
        return handle.should_prune()

    def tell(self, handle, state: TrialState, value: float | None = None) -> None:
        if state == TrialState.COMPLETE and value is not None and math.isfinite(value):
            self.study.tell(handle, value)
        elif state == TrialState.PRUNED:
            self.study.tell(handle, state=optuna.trial.TrialState.PRUNED)
        else:  # diverged, failed, lost, cancelled: no finite value to learn from
            self.study.tell(handle, state=optuna.trial.TrialState.FAIL)

    def build_run(self, slot: Slot) -> RunConfig:
        return build_run(self.spec, slot.params, slot.seed)

    def trial_id(self, handle) -> int | None:
        return handle._trial_id


class AblationPlan(Plan):
    kind, retry_failed = "ablation", True

    def __init__(self, spec: AblationSpec):
        super().__init__(spec)

    @property
    def max_retries(self) -> int:
        return self.spec.max_retries

    @property
    def total(self) -> int:
        return len(self.spec.arms) * len(self.spec.seeds)

    def digest(self) -> str:
        return contract_hash(self.spec)

    def expected_slots(self, rows: list[Trial]) -> list[Slot]:
        """Arms keep their config_id by name across spec edits; new arms get the next ids."""
        ids = {row.arm: row.config_id for row in rows}
        next_id = max(ids.values(), default=-1) + 1
        slots = []
        for arm in self.spec.arms:
            if arm.name not in ids:
                ids[arm.name], next_id = next_id, next_id + 1
            for rep, seed in enumerate(self.spec.seeds):
                slots.append(Slot(ids[arm.name], rep, dict(arm.overrides), seed, arm=arm.name))
        return slots

    def build_run(self, slot: Slot) -> RunConfig:
        return build_arm_run(self.spec, self.spec.arm(slot.arm), slot.seed)
