"""Verdicts with stated, measured error rates: the one statistics engine of reports and users.

    from armin.stats import compare_arms, plan_seeds
    table = compare_arms(df, baseline="A", direction="minimize", rope=0.5, alpha=0.05)
    more = plan_seeds(df, baseline="A", direction="minimize", rope=0.5, alpha=0.05, max_seeds=30)

`df` has one row per run: arm, seed, value (NaN when there is none), state ("complete",
"diverged", "failed"). The rule (`rule`), the seed designs (`design`), the table API
(`compare`), per-arm summaries (`summary`) and factorial effects (`factorial`) are one module
each; `armin bench stats` measures their error rates by Monte-Carlo (`montecarlo`).
"""

from armin.stats.compare import STATE_OF_TRIAL, STATES, compare_arms, comparison_trace, plan_seeds, score
from armin.stats.design import SequentialDesign
from armin.stats.factorial import factorial_effects
from armin.stats.rule import DEFAULT_ALPHA, DEFAULT_RARE_SHARE, VERDICTS, Decision, Level, Verdict, decide, sign_flip_p
from armin.stats.summary import summarize_arms

__all__ = ["DEFAULT_ALPHA", "DEFAULT_RARE_SHARE", "STATE_OF_TRIAL", "STATES", "VERDICTS", "Decision", "Level", "SequentialDesign", "Verdict",
           "compare_arms", "comparison_trace", "decide", "factorial_effects", "plan_seeds", "score",
           "sign_flip_p", "summarize_arms"]
