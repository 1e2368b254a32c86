"""`armin study run|resume|status|list`: search studies on Ray, stored in one database (a SQLite file by default)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DB = "armin.db"


def db_path(args: argparse.Namespace) -> str | Path:
    """The --db value: a SQLite file's path, or a SQLAlchemy URL as written (`armin.storage.db.locate` reads it)."""
    value = str(args.db or os.environ.get("ARMIN_DB") or DEFAULT_DB)
    return value if "://" in value else Path(value)


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="FILE|URL",
                   help=f"the database: a SQLite file, or a SQLAlchemy URL such as postgresql+psycopg://user@host/db "
                        f"(default: $ARMIN_DB or ./{DEFAULT_DB})")


def add_run_commands(sub, kind: str, example: str) -> None:
    """`run SPEC` and `resume NAME` for one kind of study ("search" or "ablation")."""
    for name, helptext in (("run", f"run (or continue) the {kind} a spec describes"),
                           ("resume", f"continue a {kind} by name, from the spec stored in the database")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == "run":
            p.add_argument("spec", type=Path, help=f"a {kind} spec (TOML), e.g. {example}")
        else:
            p.add_argument("name", help=f"the {kind}'s name")
        add_db_option(p)
        p.add_argument("--address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
        p.add_argument("--max-parallel", type=int, metavar="N", help="at most N trials at once (default: what fits)")
        p.add_argument("--force", action="store_true", help=f"continue a {kind} whose spec has changed")
        p.add_argument("--quiet", action="store_true", help="no live progress line")
        if kind == "ablation":
            add_until_settled_options(p)
        p.set_defaults(func=run_or_resume, kind=kind)


def add_until_settled_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("seeds on demand", "Run a first round of seeds, then add seeds only to the arms whose "
                                                "comparison with the baseline is unsettled (like [design] seeds = "
                                                "\"adaptive\"; resume keeps the stored design).")
    g.add_argument("--until-settled", action="store_true",
                   help="add seeds until every comparison is settled or has --max-seeds seeds")
    g.add_argument("--max-seeds", type=int, metavar="N", help="the most seeds any arm gets (required with "
                                                              "--until-settled unless the spec is adaptive)")
    g.add_argument("--first-round", type=int, metavar="N",
                   help="seeds of every arm before the first look (default: the spec's seeds, at least 10 and at "
                        "most --max-seeds)")
    g.add_argument("--step", type=int, metavar="N", help="seeds added per round to an unsettled comparison "
                                                         "(default: 5)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="run and inspect search studies",
                           description="Run an Optuna search over ARMIN's components on Ray; every trial, "
                                       "evaluation and cost lands in one SQLite file.")
    ssub = study.add_subparsers(title="study commands", metavar="COMMAND", parser_class=type(study))
    add_run_commands(ssub, "search", "studies/copy_quick.toml")
    ablation = sub.add_parser("ablation", help="run controlled ablations (arms x seeds, paired by seed)",
                              description="Train every arm of an ablation spec on the same seeds under the same "
                                          "optimizer and budget, on Ray, into the same database as studies. "
                                          "Adding seeds or arms to a finished ablation runs only the new trials.")
    asub = ablation.add_subparsers(title="ablation commands", metavar="COMMAND", parser_class=type(ablation))
    add_run_commands(asub, "ablation", "ablations/copy_quick.toml")
    ablation.set_defaults(func=lambda args: (ablation.print_help(), 2)[1])
    p = ssub.add_parser("status", help="counts by state, best trial, elapsed time, failures (studies and ablations)")
    p.add_argument("name", help="the study's name")
    add_db_option(p)
    p.set_defaults(func=status)
    p = ssub.add_parser("list", help="every study in the database")
    add_db_option(p)
    p.set_defaults(func=list_studies)
    study.set_defaults(func=lambda args: (study.print_help(), 2)[1])


def make_plan(kind: str, text: str, source: str, args: argparse.Namespace | None = None,
              stored: dict | None = None):
    """Parse and validate a spec of `kind` into its plan (before anything is written).

    For an ablation, `stored` is the resolved spec in the database (resume): a design made adaptive
    by --until-settled is kept; the --until-settled flags in `args` then apply on top.
    """
    from armin.spec.ablation import parse_ablation, until_settled
    from armin.orchestration.plans import AblationPlan, SearchPlan
    from armin.spec.search import parse_spec

    if kind != "ablation":
        return SearchPlan(parse_spec(text, source))
    spec = parse_ablation(text, source)
    if spec.sequential is None and stored and stored.get("sequential"):
        spec = until_settled(spec, **stored["sequential"])
    flags = {k: getattr(args, k, None) for k in ("max_seeds", "first_round", "step")}
    if getattr(args, "until_settled", False):
        spec = until_settled(spec, **flags)
    else:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
        if given:
            from armin.errors import ConfigError

            raise ConfigError(f"{given[0]}: only applies with --until-settled")
    return AblationPlan(spec)


def describe(plan) -> str:
    s = plan.spec
    if plan.kind == "ablation":
        d = s.sequential
        seeds = f"{len(s.seeds)} seeds" if d is None else \
            f"seeds on demand (first round {d.first_round}, +{d.step} per round, at most {d.max_seeds})"
        return (f"ablation {s.name}: {len(s.arms)} arms x {seeds}, baseline {s.baseline!r}, objective "
                f"{s.objective.direction} {s.objective.metric} (ROPE {s.rope:g})")
    return (f"study {s.name}: {s.search.n_trials} configurations x {s.search.seeds_per_config} seeds, "
            f"{s.search.sampler} sampler, {s.search.pruner} pruner, objective {s.objective.direction} "
            f"{s.objective.metric}")


def run_or_resume(args: argparse.Namespace) -> int:
    from armin.errors import ConfigError
    from armin.storage import Database, Study

    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(f"--max-parallel: must be >= 1, got {args.max_parallel}")
    path = db_path(args)
    if hasattr(args, "spec"):  # run SPEC; otherwise resume NAME
        from armin.spec.base import read_spec_text

        text = read_spec_text(args.spec)
        plan = make_plan(args.kind, text, str(args.spec), args)  # validated before the database is touched
        db = Database.open(path)
    else:
        db = Database.open(path, create=False)
        with db.session() as s:
            row = Study.find_or_raise_by_name(s, args.name)
            text, kind, stored = row.spec_text, row.kind, json.loads(row.spec_json)
        plan = make_plan(kind, text, f"{path}:{args.name}", args, stored)
    return drive(plan, text, db, args)


def drive(plan, text, db, args) -> int:
    from armin.cli.progress import StudyProgress
    from armin.orchestration.driver import Driver

    class Progress(StudyProgress):
        def describe(self, p) -> str:  # a growing ablation's round and seeds per arm first
            line = super().describe(p)
            return line if p.design is None else f"{p.design} | {line}"

    print(f"{describe(plan)} | db {db}", flush=True)
    with Progress(enabled=not args.quiet) as progress:
        driver = Driver(plan, text, db, address=args.address, max_parallel=args.max_parallel, force=args.force,
                        command=" ".join(["armin", *sys.argv[1:]]), on_progress=progress.update)
        try:
            final = driver.run()
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (driver.Interrupted): 128 + the signal, 130 or 143
            import signal

            progress.close()
            signum = getattr(e, "signum", signal.SIGINT)
            command = "ablation" if plan.kind == "ablation" else "study"
            print(f"interrupted ({signal.Signals(signum).name}): running trials were cancelled; continue with "
                  f"`armin {command} resume {plan.name} --db {db}`", file=sys.stderr)
            return 128 + signum
    from armin.reporting.status import ending

    print(progress.describe(final))
    print(f"{plan.kind} {plan.name} {ending(final.failed_for_good, final.total)}")
    return 0


def status(args: argparse.Namespace) -> int:
    from armin.reporting.status import study_summary
    from armin.storage import Database

    db = Database.open(db_path(args), readonly=True)
    print(study_summary(db, args.name))
    return 0


def list_studies(args: argparse.Namespace) -> int:
    from armin.reporting.status import list_summary
    from armin.storage import Database

    path = db_path(args)
    if isinstance(path, Path) and not path.exists():
        print(f"no database at {path}")
        return 0
    print(list_summary(Database.open(path, readonly=True)))
    return 0
