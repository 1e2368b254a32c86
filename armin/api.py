"""The small Python API: the same data as `armin query`, as pandas DataFrames.

    from armin.api import trials, curves, sql
    df = trials("armin.db", "copy-ablation-quick")       # one row per trial attempt
    c = curves("armin.db", "copy-ablation-quick")        # one row per evaluation point
    sql("armin.db", "SELECT arm, AVG(bits_error) FROM trials GROUP BY arm")
"""

from armin.reporting.query import curves, sql, trials

__all__ = ["curves", "sql", "trials"]
