"""`python -m compare.report FILE|DIR ... [--recompute]`: reprint stored results and compare the runs
that pair (an in-process run with its HTTP or batch twin: compare/comparisons.py), from one command or
several. `--recompute` derives every summary again from the raw records first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from compare.comparisons import compare_pairs, comparison_lines
from compare.results import load_run
from compare.summaries import recompute
from compare.tables import print_report


def results_files(paths: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for results files (*.json with a schema_version)."""
    found: list[Path] = []
    for given in map(Path, paths):
        found += sorted(given.rglob("*.json")) if given.is_dir() else [given]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="results files written by python -m compare, or folders")
    parser.add_argument("--recompute", action="store_true", help="derive every summary again from the raw records")
    args = parser.parse_args(argv)
    runs = []
    for path in results_files(args.paths):
        try:
            runs.append(load_run(path))
        except (OSError, ValueError, KeyError) as exc:
            if Path(path) in map(Path, args.paths):  # named on the command line: an error; found in a folder: skipped
                print(f"error: {path}: {exc}", file=sys.stderr)
                return 2
    if not runs:
        print(f"error: no results files in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 200)
    for run in runs:
        print_report(recompute(run.doc) if args.recompute else run.doc, console)
        console.print(f"results: {run.path}", highlight=False, markup=False)
    for name, comparison in compare_pairs(runs):
        for line in comparison_lines(name, comparison):
            console.print(line, highlight=False, markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
