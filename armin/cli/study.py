"""`armin study run|resume|status|list`: search studies on Ray, stored in one SQLite file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DB = "armin.db"


def db_path(args: argparse.Namespace) -> Path:
    return Path(args.db or os.environ.get("ARMIN_DB") or DEFAULT_DB)


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="FILE", help=f"the SQLite database (default: $ARMIN_DB or ./{DEFAULT_DB})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="run and inspect search studies",
                           description="Run an Optuna search over ARMIN's components on Ray; every trial, "
                                       "evaluation and cost lands in one SQLite file.")
    ssub = study.add_subparsers(title="study commands", metavar="COMMAND", parser_class=type(study))
    for name, helptext in (("run", "run (or continue) the study a spec describes"),
                           ("resume", "continue a study by name, from the spec stored in the database")):
        p = ssub.add_parser(name, help=helptext, description=helptext)
        if name == "run":
            p.add_argument("spec", type=Path, help="a study spec (TOML), e.g. studies/copy_quick.toml")
        else:
            p.add_argument("name", help="the study's name")
        add_db_option(p)
        p.add_argument("--address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
        p.add_argument("--max-parallel", type=int, metavar="N", help="at most N trials at once (default: what fits)")
        p.add_argument("--force", action="store_true", help="continue a study whose spec has changed")
        p.add_argument("--quiet", action="store_true", help="no live progress line")
        p.set_defaults(func=run_or_resume)
    p = ssub.add_parser("status", help="counts by state, best trial, elapsed time, failures")
    p.add_argument("name", help="the study's name")
    add_db_option(p)
    p.set_defaults(func=status)
    p = ssub.add_parser("list", help="every study in the database")
    add_db_option(p)
    p.set_defaults(func=list_studies)
    study.set_defaults(func=lambda args: (study.print_help(), 2)[1])


def run_or_resume(args: argparse.Namespace) -> int:
    from armin.errors import ConfigError
    from armin.orchestration.spec import load_spec, parse_spec
    from armin.storage import Database, Study

    if args.max_parallel is not None and args.max_parallel < 1:
        raise ConfigError(f"--max-parallel: must be >= 1, got {args.max_parallel}")
    path = db_path(args)
    if hasattr(args, "spec"):  # study run SPEC; otherwise study resume NAME
        spec = load_spec(args.spec)  # validated before the database is touched
        text = args.spec.read_text()
        db = Database.open(path)
    else:
        db = Database.open(path, create=False)
        with db.session() as s:
            row = Study.find_or_raise_by_name(s, args.name)
            text = row.spec_text
        spec = parse_spec(text, f"{path}:{args.name}")
    return drive(spec, text, db, args)


def drive(spec, text, db, args) -> int:
    from armin.cli.progress import StudyProgress
    from armin.orchestration.driver import Driver

    print(f"study {spec.name}: {spec.search.n_trials} configurations x {spec.search.seeds_per_config} seeds, "
          f"{spec.search.sampler} sampler, {spec.search.pruner} pruner, objective {spec.objective.direction} "
          f"{spec.objective.metric} | db {db.path}", flush=True)
    with StudyProgress(enabled=not args.quiet) as progress:
        driver = Driver(spec, text, db, address=args.address, max_parallel=args.max_parallel, force=args.force,
                        command=" ".join(["armin", *sys.argv[1:]]), on_progress=progress.update)
        try:
            final = driver.run()
        except KeyboardInterrupt:
            progress.close()
            print(f"interrupted: running trials were cancelled; continue with `armin study resume {spec.name}"
                  f" --db {db.path}`", file=sys.stderr)
            return 130
    print(progress.describe(final))
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
    if not path.exists():
        print(f"no database at {path}")
        return 0
    print(list_summary(Database.open(path, readonly=True)))
    return 0
