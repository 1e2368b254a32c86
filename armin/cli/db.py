"""`armin db upgrade`: bring an older armin database to this schema version (a backup first)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from armin.cli.study import add_db_option

    p = sub.add_parser("db", help="database maintenance: `armin db upgrade`",
                       description="Database maintenance.")
    inner = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    up = inner.add_parser("upgrade", help="upgrade a database written by an older armin, after a full backup",
                          description="Upgrade the database to this armin's schema version. The file is first "
                                      "copied to FILE.schema-N.bak; the upgrade runs in one transaction and only "
                                      "adds (tables, columns), so nothing is lost.")
    add_db_option(up)
    up.set_defaults(func=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from armin.cli.study import db_path
    from armin.storage.upgrade import upgrade

    done = upgrade(db_path(args))
    if done.backup is None:
        print(f"{done.path}: already schema version {done.to_version}; nothing to do")
        return 0
    added = ", ".join([*done.tables, *done.columns]) or "nothing"
    print(f"{done.path}: schema version {done.from_version} -> {done.to_version} (added {added}); "
          f"the old file is kept as {done.backup}")
    return 0
