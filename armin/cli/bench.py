"""`armin bench ...`: committed benchmark commands that print ratios against same-process baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from armin.costs.settings import ROUNDS, STEPS_PER_ROUND, WARMUP_ROUNDS


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
    p.set_defaults(func=run_report_bench)
    m = bsub.add_parser("model", help="fast ARMIN vs nn.LSTM (H and 3H) and the naive reference: time per step, memory",
                        description="Time forward+backward (train), no-grad inference (infer) and a full Adam step "
                                    "(step) of ARMIN (fused, each formulation x cell), the eager step loop, the naive "
                                    "reference and nn.LSTM at the same and 3x the hidden size, interleaved in one "
                                    "process (on CUDA also each fused ARMIN model replayed as CUDA graphs, and issue 11's "
                                    "targets); report the median time per sequence step, peak train memory and ratios.")
    m.add_argument("--batch", default=None, help="batch sizes, comma-separated (default: 1,32; on cuda 32,256)")
    m.add_argument("--seq-len", default=None, help="sequence lengths, comma-separated (default: 100,1000)")
    m.add_argument("--modes", default="train,infer,step", help="any of train,infer,step (default: all three)")
    m.add_argument("--hidden", type=int, default=100, help="ARMIN hidden size H; the LSTMs get H and 3H (default: 100)")
    m.add_argument("--repeats", type=int, default=5, help="timed rounds per cell; medians are reported (default: 5)")
    m.add_argument("--warmup", type=int, default=None,
                   help=f"untimed rounds first (default: 1; with --spec {WARMUP_ROUNDS})")
    m.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cpu; with --spec the spec's)")
    m.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    m.add_argument("--no-naive", action="store_true", help="skip the naive reference (it is the slowest)")
    m.add_argument("--no-eager", action="store_true", help="skip the eager step loops (slow at long sequences)")
    m.add_argument("--no-tardis", action="store_true",
                   help="skip the TARDIS-family models (AwTA, TARDIS, lstm+tardis-addressing)")
    m.add_argument("--spec", type=Path, metavar="SPEC",
                   help="profile the arms of this ablation spec instead (the study's cost profile: interleaved "
                        "paired rounds on the spec's device with a trial's threads, ratios to the baseline with "
                        "intervals and speed verdicts); --device and --threads override the spec's")
    m.add_argument("--rounds", type=int, default=ROUNDS, help=f"with --spec: timed rounds (default: {ROUNDS})")
    m.add_argument("--steps-per-round", type=int, default=STEPS_PER_ROUND,
                   help=f"with --spec: training steps per arm per round (default: {STEPS_PER_ROUND})")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=run_model_bench)
    s = bsub.add_parser("stats", help="Monte-Carlo error rates of the verdict engine (armin.stats) vs its targets",
                        description="Measure, on simulated data of known truth and with the engine's own code, the "
                                    "family-wise false better/worse rate, interval coverage, false equivalence, "
                                    "worst-scoring of diverged runs and power of armin.stats, for the fixed and the "
                                    "sequential design, and the seed-runs the sequential design saves; print each "
                                    "property's worst cell with its Monte-Carlo standard error against its target.")
    s.add_argument("--reps", type=int, default=None,
                   help="replications per cell (default: 10000, or 400 with --quick)")
    s.add_argument("--quick", action="store_true", help="only the cells m in {1,3,8}, n in {3,5,10,30}")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_stats_bench)
    c = bsub.add_parser("chaos", help="random worker, node and driver kills during studies; invariants every round",
                        description="Run ablations and searches on a private Ray cluster of one-CPU nodes on this "
                                    "machine, through the real CLI driver, and in each round SIGKILL a trial's worker, "
                                    "a whole node or the driver (then resume); after every round check on a snapshot "
                                    "of the database: at most one result per slot, status/views/report agree, "
                                    "Optuna agrees, nothing RUNNING once a driver exits, finished studies complete.")
    c.add_argument("--rounds", type=int, default=20, help="kill rounds (default: 20)")
    c.add_argument("--nodes", type=int, default=2, help="worker nodes of one CPU (default: 2)")
    c.add_argument("--steps", type=int, default=300, help="training steps per trial (default: 300)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random kills (default: 0)")
    c.add_argument("--per-study", type=int, default=6, help="kill rounds in one study before it is finished "
                                                             "without kills and the next kind starts (default: 6)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=run_chaos_bench)
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])


def run_report_bench(args: argparse.Namespace) -> int:
    from armin.bench.report import bench_report

    bench_report(args.trials, args.json)
    return 0


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


def run_model_bench(args: argparse.Namespace) -> int:
    import torch

    from armin.bench.model import MODES, bench_model
    from armin.errors import ConfigError

    def ints(flag: str, text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"{flag}: expected integers separated by commas, got {text!r}") from None
        if any(v < 1 for v in values):
            raise ConfigError(f"{flag}: values must be >= 1, got {text!r}")
        return values

    if args.device is not None and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available in this torch build / machine")
    if not (args.device is None or args.device == "cpu" or args.device.startswith("cuda")):
        raise ConfigError(f"--device: expected cpu or cuda[:N], got {args.device!r}")
    if (args.warmup is not None and args.warmup < 0) or (args.threads is not None and args.threads < 1):
        raise ConfigError(f"need --warmup >= 0 and --threads >= 1; got {args.warmup=}, {args.threads=}")
    if args.spec is not None:
        return run_spec_bench(args)
    batches = None if args.batch is None else ints("--batch", args.batch)
    seq_lens = None if args.seq_len is None else ints("--seq-len", args.seq_len)
    modes = tuple(args.modes.split(","))
    if not set(modes) <= set(MODES):
        raise ConfigError(f"--modes: expected some of {','.join(MODES)}, got {args.modes!r}")
    if args.hidden < 4 or args.repeats < 1:
        raise ConfigError(f"need --hidden >= 4 and --repeats >= 1; got {args.hidden=}, {args.repeats=}")
    bench_model(batches, seq_lens, hidden=args.hidden, modes=modes, repeats=args.repeats,
                warmup=1 if args.warmup is None else args.warmup, device=args.device or "cpu", threads=args.threads,
                naive=not args.no_naive, as_json=args.json, eager=not args.no_eager,
                tardis=not args.no_tardis)
    return 0


def run_spec_bench(args: argparse.Namespace) -> int:
    from armin.bench.arms import bench_spec
    from armin.costs.settings import Settings
    from armin.errors import ConfigError

    if args.rounds < 2 or args.steps_per_round < 1:
        raise ConfigError(f"need --rounds >= 2 (the pairs of the speed verdicts) and --steps-per-round >= 1; got "
                          f"{args.rounds=}, {args.steps_per_round=}")
    settings = Settings(rounds=args.rounds, warmup_rounds=WARMUP_ROUNDS if args.warmup is None else args.warmup,
                        steps_per_round=args.steps_per_round, threads=args.threads)
    bench_spec(args.spec, settings, device=args.device, as_json=args.json)
    return 0


def run_stats_bench(args: argparse.Namespace) -> int:
    from armin.bench.stats import bench_stats
    from armin.errors import ConfigError

    if args.reps is not None and args.reps < 2:
        raise ConfigError(f"--reps must be >= 2, got {args.reps}")
    bench_stats(args.reps, quick=args.quick, as_json=args.json)
    return 0


def run_chaos_bench(args: argparse.Namespace) -> int:
    from armin.bench.chaos import bench_chaos
    from armin.errors import ConfigError

    if args.rounds < 1 or args.nodes < 1 or args.steps < 4 or args.seed < 0 or args.per_study < 1:
        raise ConfigError(f"need --rounds >= 1, --nodes >= 1, --steps >= 4, --seed >= 0, --per-study >= 1; got "
                          f"{args.rounds=}, {args.nodes=}, {args.steps=}, {args.seed=}, {args.per_study=}")
    return bench_chaos(args.rounds, nodes=args.nodes, steps=args.steps, seed=args.seed, per_study=args.per_study,
                       as_json=args.json)
