"""`armin bench ...`: committed benchmark commands that print ratios against same-process baselines."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (ratios against baselines run in the same process)")
    bsub = bench.add_subparsers(title="benchmarks", metavar="BENCH", parser_class=type(bench))
    p = bsub.add_parser("study", help="platform overhead per trial vs training time; parallel efficiency",
                        description="Run small studies through the real driver on a local 2-CPU Ray cluster and "
                                    "report the per-trial overhead (prepare, dispatch, transfer, write) against "
                                    "trials of about --durations seconds, and the speedup with 2 workers.")
    p.add_argument("--durations", default="1,5,30", help="trial lengths in seconds, comma-separated (default: 1,5,30)")
    p.add_argument("--trials", type=int, default=3, help="trials per length (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_study_bench)
    p = bsub.add_parser("report", help="time `armin report` on a synthetic ablation of --trials trials",
                        description="Write a synthetic ablation database of --trials trials (the driver's schema, "
                                    "values from known distributions) and time the report end to end against the "
                                    "10-second budget for 10,000 trials.")
    p.add_argument("--trials", type=int, default=10_000, help="trials in the synthetic ablation (default: 10000)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=lambda args: (__import__("armin.bench.report", fromlist=["bench_report"])
                                      .bench_report(args.trials, args.json), 0)[1])
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])


def run_study_bench(args: argparse.Namespace) -> int:
    from armin.bench.study import bench_study
    from armin.errors import ConfigError

    try:
        durations = tuple(float(x) for x in args.durations.split(","))
    except ValueError:
        raise ConfigError(f"--durations: expected numbers separated by commas, got {args.durations!r}") from None
    if any(d <= 0 for d in durations) or args.trials < 1:
        raise ConfigError("--durations must be > 0 and --trials >= 1")
    bench_study(durations, args.trials, args.json)
    return 0
