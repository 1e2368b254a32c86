"""`armin bench stats`: the measured error rates of the verdict engine (`armin.stats.montecarlo`).

Prints, per property of the fixed and the adaptive design, the worst cell (m, n, distribution),
its rate with the Monte-Carlo standard error, the target and whether it is met; then the
seed-runs the adaptive design saves on a mixed family. `--quick` measures a subset of cells.
"""

from __future__ import annotations

import json

from armin.stats import montecarlo


def bench_stats(reps: int | None = None, *, quick: bool = False, as_json: bool = False) -> dict:
    """Run the harness (`reps` per cell; default DEFAULT_REPS, QUICK_REPS with `quick`), print it, return it."""
    reps = reps if reps is not None else montecarlo.QUICK_REPS if quick else montecarlo.DEFAULT_REPS
    report = montecarlo.run_all(reps, quick=quick)
    out = montecarlo.report_dict(report)
    print(json.dumps(out, indent=2) if as_json else montecarlo.format_report(report), flush=True)
    return out
