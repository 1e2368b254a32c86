"""Cost profiles in the database: one `armin_cost_profiles` row per arm, one `armin_cost_samples` row per round.

The driver is the only writer; a new profile of a study replaces the old one (its arms' rows are
deleted first, in the same transaction). Reports read the tables through `armin.reporting.query`.
"""

from __future__ import annotations

import json

from sqlalchemy import delete

from armin.costs.profile import Profile
from armin.storage import CostProfile, CostSample, Database, utcnow


def save_profile(db: Database, study_id: int, profile: Profile) -> None:
    with db.session() as s:
        s.execute(delete(CostProfile).where(CostProfile.study_id == study_id))
        for a in profile.arms:
            row = CostProfile(study_id=study_id, arm=a.arm, config_json=json.dumps(a.config, sort_keys=True),
                              n_params=a.n_params, flops_per_step=a.flops_per_step, peak_step_bytes=a.peak_step_bytes,
                              batch_size=a.batch_size, device=profile.device, host=profile.host,
                              threads=profile.threads, clock=profile.clock, warmup_rounds=profile.warmup_rounds,
                              steps_per_round=profile.steps_per_round, measured_at=utcnow())
            row.samples = [CostSample(round=r, train_step_s=t, infer_s=i, elements=e)
                           for r, (t, i, e) in enumerate(zip(a.train_step_s, a.infer_s, a.elements))]
            s.add(row)
