"""`armin query`: read-only SQL on the study database, and shortcuts for the flattened views."""

from __future__ import annotations

import argparse
import sys

SHORTCUTS = ("trials", "curves")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from armin.cli.study import add_db_option

    p = sub.add_parser(
        "query", help="read-only SQL on the database, or `trials NAME` / `curves NAME`",
        description="Run one read-only SQL statement (statements that write are refused and change nothing), or "
                    "a shortcut. Views: `trials` (one row per trial attempt: study, arm, factors, seed, state, "
                    "objective, final metrics, costs) and `curves` (one row per evaluation point: study, trial, "
                    "arm, seed, step, metric, value). Tables: armin_studies, armin_trials, armin_metrics, "
                    "armin_costs, and Optuna's own.",
        epilog='examples: armin query "SELECT arm, AVG(bits_error) FROM trials GROUP BY arm"; '
               "armin query trials copy-ablation-quick --format csv")
    p.add_argument("what", metavar="SQL|trials|curves", help="a SQL statement, or a shortcut")
    p.add_argument("name", nargs="?", help="the study, for the trials/curves shortcuts")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    p.add_argument("--timeout", type=float, metavar="S", default=None,
                   help="stop a statement after S seconds (default: 60); Ctrl-C stops it too")
    add_db_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from armin.cli.study import db_path
    from armin.errors import ConfigError
    from armin.reporting import query

    db = db_path(args)
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    limit = {} if args.timeout is None else {"timeout_s": args.timeout}
    if args.what in SHORTCUTS:
        if not args.name:
            raise ConfigError(f"query {args.what}: needs the study's name (armin query {args.what} NAME)")
        df = getattr(query, args.what)(db, args.name)
    else:
        if args.name:
            raise ConfigError(f"query: unexpected {args.name!r} after the SQL (quote the whole statement)")
        df = query.sql(db, args.what, **limit)
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records") + "\n")
    else:
        print(df.to_string(index=False) if not df.empty else "(no rows)")
    return 0
