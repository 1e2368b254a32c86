"""A search's sampler: Optuna's study in the same database file, asked for configurations and told outcomes.

The driver asks it for a fresh configuration when the design's known slots are all queued
(`new_slot`), reports evaluations for the pruner (`report`) and tells every attempt's outcome
(`tell`). An ablation has none: its design fixes every slot.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna

from armin.spec.sampling import make_pruner, make_sampler, suggest
from armin.storage import TrialState

if TYPE_CHECKING:  # the design makes its sampler
    from armin.orchestration.plans import SearchDesign, Slot


class OptunaSampler:
    def __init__(self, design: SearchDesign):
        self.design, self.spec = design, design.spec

    def open(self, db_url: str) -> None:
        """Create or load the Optuna study; its sampler is seeded from the trials it already holds.

        A resumed search continues its sampler instead of replaying it from the spec's seed (which
        repeated configurations 0, 1, ...): see `armin.orchestration.spec.resume_seed` for the rule.
        """
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(storage=optuna.storages.RDBStorage(db_url), study_name=self.spec.name,
                                         sampler=make_sampler(self.spec), pruner=make_pruner(self.spec),
                                         direction=self.spec.objective.direction, load_if_exists=True)
        so_far = len(self.study.get_trials(deepcopy=False))
        if so_far:
            self.study.sampler = make_sampler(self.spec, so_far)

    def cleanup_stale(self) -> None:
        """Close the Optuna trials a dead driver left open."""
        for t in self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        for _ in self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING]):
            self.study.tell(self.study.ask(), state=optuna.trial.TrialState.FAIL)

    def new_slot(self, n_configs: int) -> tuple[Slot, object, list[Slot]] | None:
        """A fresh configuration (the study has `n_configs`): its first slot, its Optuna trial, its other seeds.

        None when the search has all the configurations it asks for.
        """
        if n_configs >= self.spec.search.n_trials:
            return None
        otrial = self.study.ask()
        slots = self.design.slots_for(n_configs, suggest(otrial, self.spec))
        return slots[0], otrial, slots[1:]

    def handle_for(self, slot: Slot) -> object:
        """An Optuna trial for a replicate or a retry: the slot's params, enqueued, then suggested.

        The suggest calls take the enqueued values (no sampler draw) and record them as the trial's
        params, so Optuna's view of every row has its params (an enqueued trial that is only asked
        has none, and TPE would learn nothing from its value).
        """
        self.study.enqueue_trial(slot.params, skip_if_exists=False)
        otrial = self.study.ask()
        suggest(otrial, self.spec)
        return otrial

    def report(self, handle, value: float, step: int) -> bool:
        """Record an intermediate value; True if the trial should be pruned."""
        handle.report(value, step)
        return handle.should_prune()

    def tell(self, handle, state: TrialState, value: float | None = None) -> None:
        if state == TrialState.COMPLETE and value is not None and math.isfinite(value):
            self.study.tell(handle, value)
        elif state == TrialState.PRUNED:
            self.study.tell(handle, state=optuna.trial.TrialState.PRUNED)
        else:  # diverged, failed, lost, cancelled: no finite value to learn from
            self.study.tell(handle, state=optuna.trial.TrialState.FAIL)

    @staticmethod
    def trial_id(handle) -> int:
        return handle._trial_id
