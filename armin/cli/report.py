"""`armin report NAME`: the comparison report of a study or ablation, from the database alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from armin.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from armin.cli.study import add_db_option

    p = sub.add_parser("report", help="write a study's report (HTML, Markdown, CSV, PNG/SVG figures)",
                       description="Write the report of an ablation (per-arm statistics, paired comparisons with "
                                   "the baseline, factor effects, learning curves, memory probes, costs, "
                                   "provenance) or of a search (history, importances, best configurations). Reads "
                                   "the database only, so it can run while the study is still going.")
    p.add_argument("name", help="the study or ablation")
    p.add_argument("--out", type=Path, help="output directory (default: reports/NAME)")
    add_db_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from armin.cli.study import db_path
    from armin.reporting.render import build_report

    out = args.out or Path("reports") / args.name
    check_out_folder(out, "--out" if args.out else "the report folder (reports/NAME)")
    index = build_report(db_path(args), args.name, out)
    print(f"wrote {index} (and report.md, CSV tables, figures/ as PNG and SVG)")
    return 0


def check_out_folder(out: Path, label: str = "--out") -> None:
    """Refuse an output folder that is, or lies under, a regular file (one `ConfigError` line)."""
    try:
        existing = next(p for p in [out, *out.parents] if p.exists())
    except OSError as e:  # e.g. a name longer than the file system allows
        shown = str(out) if len(str(out)) <= 80 else f"{str(out)[:60]}... ({len(str(out)):,} characters)"
        raise ConfigError(f"{label}: {shown} cannot be a folder ({e.strerror or type(e).__name__})") from None
    if existing == out and not out.is_dir():
        raise ConfigError(f"{label}: {out} is a file; the report needs a folder (it writes index.html, report.md, "
                          f"CSV tables and figures/ there)")
    if not existing.is_dir():
        raise ConfigError(f"{label}: {existing} is a file, so the folder {out} cannot be created")
