"""The `armin` command: one parser, one place that turns user errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import sys

from armin.errors import ArminError

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (`armin train: error: ...`), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from armin.cli import bench, db, query, report, study, train

    parser = Parser(prog="armin", description="Controlled ablations and hyperparameter search on ARMIN "
                                              "(Li et al., IJCAI 2019).")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    train.add_parser(sub)
    study.add_parser(sub)
    query.add_parser(sub)
    report.add_parser(sub)
    bench.add_parser(sub)
    db.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return USAGE_ERROR
    try:
        return args.func(args)
    except ArminError as e:
        sys.stderr.write(f"armin: error: {e}\n")
        return USAGE_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("armin: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
