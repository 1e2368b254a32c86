"""`armin study status` and `armin study list`: plain-text summaries read from the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

from armin.spec import BaseSpec, SearchSpec, stored_spec
from armin.storage import Database, Study, Trial, TrialState, decode_value
from armin.storage.failures import count_failed_for_good, histories


def best_trial(study: Study, direction: str) -> Trial | None:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and decode_value(t.value, t.value_kind) is not None]
    if not done:
        return None
    key = lambda t: decode_value(t.value, t.value_kind)  # noqa: E731
    return min(done, key=key) if direction == "minimize" else max(done, key=key)


def study_summary(db: Database, name: str) -> str:
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, name)
        spec = stored_spec(study.kind, study.spec_json, f"study '{name}': the stored spec")
        objective = spec.objective
        counts = Counter(t.state.name.lower() for t in study.trials)
        results = sum(n for state, n in counts.items() if TrialState[state.upper()].counts_as_result())
        outside = 0
        if study.kind == "ablation":
            total = len(spec.arms) * len(spec.seeds)
            arms, seeds = {a.name for a in spec.arms}, set(spec.seeds)
            outside = sum(t.state.counts_as_result() for t in study.trials if t.arm not in arms or t.seed not in seeds)
            results -= outside  # runs of arms or seeds the spec no longer has are kept, but are no slot of it
        else:
            total = spec.search.n_trials * spec.search.seeds_per_config
        # seeds on demand: the total is every candidate seed of every arm, which the design may never need
        of = f"{total} at most" if getattr(spec, "sequential", None) else f"{total}"
        state = described_status(study.status, (((t.config_id, t.seed), t.state, t.failure_reason)
                                                for t in study.trials), spec)
        lines = [f"{study.kind} {study.name} ({state}), created {study.created_at:%Y-%m-%d %H:%M:%S} UTC, "
                 f"elapsed {(study.updated_at - study.created_at).total_seconds() / 60:.1f} min",
                 f"results {results}/{of}; attempts by state: " +
                 (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")]
        if outside:
            lines.append(f"  {outside} more results of arms or seeds no longer in the spec (kept, not counted)")
        if study.kind == "ablation":
            lines += arm_lines(study, objective.metric)
        best = best_trial(study, objective.direction)
        if best is not None:
            lines.append(f"best {objective.metric} {decode_value(best.value, best.value_kind):.6g} "
                         f"(trial {best.number}, seed {best.seed}): {best.params_json}")
        for t in study.trials:
            if t.state in (TrialState.FAILED, TrialState.LOST, TrialState.CANCELLED, TrialState.DIVERGED):
                detail = f"diverged at step {t.diverged_step}" if t.state == TrialState.DIVERGED else t.failure_reason
                lines.append(f"  trial {t.number} (config {t.config_id}, seed {t.seed}, attempt {t.attempt}) "
                             f"{t.state.name.lower()}: {detail}")
        return "\n".join(lines)


def max_retries(spec: BaseSpec) -> int:
    """The resolved spec's retry budget (a search's is under `search`)."""
    return spec.search.max_retries if isinstance(spec, SearchSpec) else spec.max_retries


def ending(failed_for_good: int, slots: int) -> str:
    """How a study ended, in the words `study status`, the driver's last line and the report all use."""
    if not failed_for_good:
        return f"complete: all {slots} slots have a result"
    return f"ended incomplete: {failed_for_good} of {slots} slots failed for good"


def described_status(status: str, attempts: Iterable[tuple[Hashable, TrialState, str | None]], spec: BaseSpec) -> str:
    """The study row's status, with how many slots failed for good when it ended "failed" (results < slots).

    `attempts`: (slot key, state, failure reason) of every attempt in run order.
    """
    if status != "failed":
        return status
    slots = histories(attempts)
    return ending(count_failed_for_good(slots, max_retries=max_retries(spec)), len(slots))


def arm_lines(study: Study, metric: str) -> list[str]:
    """Per arm: results so far and the mean objective (the report has the statistics)."""
    lines = []
    for arm in dict.fromkeys(t.arm for t in study.trials):
        done = [t for t in study.trials if t.arm == arm and t.state.counts_as_result()]
        values = [v for t in done if t.state == TrialState.COMPLETE
                  and (v := decode_value(t.value, t.value_kind)) is not None]
        mean = f"mean {metric} {sum(values) / len(values):.4g}" if values else "no values yet"
        lines.append(f"  arm {arm}: {len(done)} results, {mean}")
    return lines


def list_summary(db: Database) -> str:
    with db.session() as s:
        studies = s.query(Study).order_by(Study.created_at).all()
        if not studies:
            return "no studies"
        rows = [f"{'name':<28} {'kind':<9} {'status':<12} {'results':>8} {'attempts':>9}  created (UTC)"]
        for st in studies:
            results = sum(t.state.counts_as_result() for t in st.trials)
            rows.append(f"{st.name:<28} {st.kind:<9} {st.status:<12} {results:>8} {len(st.trials):>9}  "
                        f"{st.created_at:%Y-%m-%d %H:%M}")
        return "\n".join(rows)
