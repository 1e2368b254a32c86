"""The Optuna adapter of a search: its sampler, its pruner, and how a trial is asked for its parameters."""

from __future__ import annotations

import optuna

from armin.seeding import RESUME, derive_seed
from armin.spec.search import SearchSpec, grid_space

TPE_MULTIVARIATE = True  # joint (multivariate) TPE; Optuna 5's own default for one objective
TPE_CONSTANT_LIAR = True  # running trials count as bad guesses, so parallel workers spread out


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without the `study.stop()` it calls when the grid is used up.

    That call only works inside `study.optimize`: with ask-and-tell (our driver) the `tell` of the
    last grid point raises RuntimeError, and the `tell` of an enqueued trial (a replicate or a
    retry, which has no grid id) raises KeyError once one point is left. The driver bounds the
    study itself (`search.n_trials <= grid_size`, checked at load). Sampling is unchanged.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None


def resume_seed(spec: SearchSpec, trials_so_far: int = 0) -> int:
    """The seed of the sampler a driver builds when its Optuna study already holds `trials_so_far` trials.

    The rule: a fresh study (no trials yet) uses the spec's `sampler_seed` itself, so a fresh run
    with the same spec samples the same first configurations; a resumed one (after Ctrl-C, a crash
    or `--force`) uses `derive_seed(sampler_seed, RESUME, trials_so_far)`, cut to 32 bits.
    Optuna's random and TPE samplers draw from a `numpy` RandomState seeded once at construction
    (TPE's startup trials come from an inner RandomSampler with the same seed), and nothing of that
    state is stored in the study: rebuilding them with the spec's seed replays the stream from its start, so a resumed
    search re-sampled configurations 0, 1, ... bit for bit. Every driver that asks for anything adds
    at least one trial to the Optuna study (asked trials are stored at once, a dead driver's are
    failed, never removed), so no two drivers of one study that sample get the same seed, and the
    seed depends on the database alone: resuming the same database again samples the same
    configurations. The resumed configurations are not those an uninterrupted run would have
    drawn (replaying the stream cannot be exact for TPE, whose draws depend on the values told),
    only new draws.

    The grid sampler keeps the spec's seed: its seed fixes the shuffled order of the grid that the
    `grid_id`s stored on each trial refer to, and it skips the grid points earlier trials took (by
    trial number, then the unvisited ones), so a resumed grid search never repeats a point as long
    as the order stays the same.
    """
    seed = spec.search.sampler_seed
    if spec.search.sampler == "grid" or trials_so_far <= 0:
        return seed
    return derive_seed(seed, RESUME, trials_so_far) >> 31  # numpy's RandomState takes 32 bits


def make_sampler(spec: SearchSpec, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, every setting stated (never Optuna's implicit default).

    `trials_so_far`: the trials already in the study's Optuna tables; it picks the seed
    (`resume_seed`), so that a resumed search continues with new draws instead of repeating
    the configurations the earlier drivers sampled.
    """
    s, seed = spec.search, resume_seed(spec, trials_so_far)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.tpe_startup_trials,
                                          multivariate=TPE_MULTIVARIATE, constant_liar=TPE_CONSTANT_LIAR)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return AskTellGridSampler(grid_space(spec), seed=seed)


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """The spec's pruner; steps are training steps, reported at every evaluation."""
    s = spec.search
    if s.pruner == "none":
        return optuna.pruners.NopPruner()
    if s.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials, n_warmup_steps=s.n_warmup_steps,
                                           interval_steps=1, n_min_trials=1)
    return optuna.pruners.HyperbandPruner(min_resource=s.min_resource, max_resource=spec.train.steps,
                                          reduction_factor=s.reduction_factor, bootstrap_count=0)


def suggest(trial: optuna.trial.BaseTrial, spec: SearchSpec) -> dict[str, object]:
    """Ask `trial` for every searched parameter (named by its dotted path); returns {path: value}."""
    out: dict[str, object] = {}
    for p in spec.space:
        if p.kind == "categorical":
            out[p.path] = trial.suggest_categorical(p.path, list(p.choices))
        elif p.kind == "int":
            out[p.path] = trial.suggest_int(p.path, p.low, p.high, step=p.step, log=p.log)
        else:
            out[p.path] = trial.suggest_float(p.path, p.low, p.high, step=p.step, log=p.log)
    return out


__all__ = ["AskTellGridSampler", "make_pruner", "make_sampler", "resume_seed", "suggest"]
