"""`python -m compare.report FILE|DIR ... [--out report/]`: from stored results to conclusions.

Loads any set of results files (any engines, scenarios, modes, machines; folders are searched), and
writes `<out>/report.md` with PNG figures: side-by-side tables per scenario (engines as columns, with
95% intervals), the design's hypotheses H1-H5 judged with bootstrap intervals, a roofline per GPU run,
and the HTTP-overhead and streaming-fidelity pairs. It prints the verdicts and pairs. One file alone
is reprinted as its table (`--recompute` first derives every summary again from the raw records).

`python -m compare.report A.json --vs B.json` compares two runs cell by cell instead: B / A per metric,
with an interval and "not significant" where it holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from compare.analysis.pairs import compare_pairs, comparison_lines
from compare.analysis.runsets import hardware, label, precision, scenario_tables, unique_labels, usable
from compare.analysis.cell import recompute
from compare.analysis.vs import MIN_EFFECT, compare_runs, vs_lines
from compare.report import figures, markdown, stepcost_report, traffic_figures
from compare.report.anatomy import anatomy_section
from compare.report.hypotheses import verdicts_by_machine
from compare.report.roofline import roofline
from compare.report.tables import print_report
from compare.report.trace import cell_trace
from compare.results.store import load_run
from compare.analysis.stepcost import itl_prediction_lines, itl_predictions


def results_files(paths: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for results files (*.json or *.json.xz with a schema_version)."""
    found: list[Path] = []
    for given in map(Path, paths):
        found += sorted([*given.rglob("*.json"), *given.rglob("*.json.xz")]) if given.is_dir() else [given]
    return found


def load_runs(paths: list[str], recomputed: bool) -> list:
    runs, named = [], set(map(Path, paths))
    for path in results_files(paths):
        try:
            run = load_run(path)
        except (OSError, ValueError, KeyError) as exc:
            if path in named:  # named on the command line: an error; met in a folder: not a results file, skipped
                raise SystemExit(f"error: {path}: {exc}") from None
            continue
        if recomputed:
            recompute(run.doc)
        runs.append(run)
    if not runs:
        raise SystemExit(f"error: no results files in {', '.join(paths)}")
    return runs


def timeline_target(runs: list, names: dict[int, str], spec: str | None):
    """`LABEL:CELL`, or by default the busiest concurrent cell up to c=16 of the first run that has one."""
    if spec:
        wanted, _, cell_id = spec.rpartition(":")
        run = next((r for r in runs if names[id(r)] == wanted or label(r) == wanted), None)
        if run is None:
            raise SystemExit(
                f"error: --timeline {spec}: no run named {wanted!r}; runs: {', '.join(sorted(set(names.values())))}"
            )
        return run, cell_id
    options = [(run, c) for run in runs for c in run.doc["cells"] if c["config"]["concurrency"] <= 16 and c["requests"]]
    if not options:
        return None, None
    run, cell = max(
        options,
        key=lambda o: (
            o[0].doc["scenario"]["name"] == "concurrent",
            o[1]["config"]["concurrency"],
            len(o[1]["requests"]),
            o[0].doc["metadata"]["date_utc"],
        ),
    )
    return run, cell["cell_id"]


def write_traces(runs: list, names: dict[int, str], spec: str, out: Path) -> list[Path]:
    """--trace: every cell of every run ("all"), or the one named LABEL:CELL, as out/traces/<run>-<scenario>-<cell>.json
    (compare/report/trace.py)."""
    wanted_run, _, wanted_cell = spec.rpartition(":") if spec != "all" else ("", "", "")
    written = []
    for run in runs:
        if wanted_run and wanted_run not in (names[id(run)], label(run)):
            continue
        for cell in run.doc["cells"]:
            if cell["requests"] and wanted_cell in ("", cell["cell_id"]):
                name = f"{names[id(run)]}-{run.doc['scenario']['name']}-{cell['cell_id']}.json"
                path = out / "traces" / "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cell_trace(run, cell)))
                written.append(path)
    if not written:
        runs_named = ", ".join(sorted(set(names.values())))
        raise SystemExit(f"error: --trace {spec}: no run and cell with requests by that name; runs: {runs_named}")
    return written


def write_page(runs: list, report_md: Path, timeline_spec: str | None) -> Path:
    from compare.report.html import write_html  # Plotly only where a page is asked for

    usable_runs = [r for r in runs if usable(r)]
    names = unique_labels(usable_runs)
    first = timeline_target(usable_runs, names, timeline_spec)  # the timeline the markdown draws leads the page's
    return write_html(usable_runs, names, report_md, report_md.parent, first)


@dataclass
class Written:
    path: Path
    verdicts: dict
    pair_lines: list[str]
    figures: list[tuple[str, str]]


def write_report(all_runs: list, out: Path, timeline_spec: str | None) -> Written:
    runs = [r for r in all_runs if usable(r)]  # a run where every request failed is listed, not analysed
    names = {**{id(r): f"{label(r)} (failed)" for r in all_runs}, **unique_labels(runs)}
    verdicts = verdicts_by_machine(runs)
    pairs = compare_pairs(runs)
    pair_lines = [line for name, comparison in pairs for line in comparison_lines(name, comparison)]
    roofs = [(f"{names[id(r)]} {r.doc['scenario']['name']}", roofline(r)) for r in runs]
    made = figures.concurrency_curves(runs, names, out) + figures.latency_cdfs(runs, names, out)
    made += figures.prefix_cache_ttft(runs, names, out) + figures.korean_bars(runs, names, out)
    made += figures.http_overhead_bars(pairs, out)
    made += traffic_figures.turn_ttft(runs, names, out) + traffic_figures.hit_rate_over_time(runs, names, out)
    made += traffic_figures.adapter_ttft(runs, names, out) + stepcost_report.figure(runs, names, out)
    made += stepcost_report.anatomy_figure(runs, names, out)
    run, cell_id = timeline_target(runs, names, timeline_spec)
    if run is not None:
        made += figures.timeline(run, names[id(run)], cell_id, out)

    def describe(r):
        failed = "" if usable(r) else ", every request failed"
        return {"engine": f"{label(r)}{failed}", "precision": precision(r.doc), "hardware": hardware(r.doc)}

    lines = [
        f"# enginebench report ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"{len(all_runs)} results files; `python -m compare.report {' '.join(sys.argv[1:])}`",
        "",
    ]
    lines += markdown.verdicts_section(verdicts) + markdown.runs_section(all_runs, names, describe)
    lines += markdown.tables_section(scenario_tables(runs, names))
    gpu_roofs = [(n, roof) for n, roof in roofs if "why_not" not in roof]
    lines += markdown.roofline_section(gpu_roofs + [r for r in roofs if "why_not" in r[1]][: 1 if not gpu_roofs else 0])
    lines += markdown.lines_section("HTTP overhead and streaming fidelity (paired runs)", pair_lines)
    predicted = itl_prediction_lines(itl_predictions(runs))  # batch-shapes fits against the same engine's load
    lines += markdown.lines_section(
        "Step cost by batch shape (docs/steps.md)", stepcost_report.table_lines(runs, names)
    )
    lines += markdown.lines_section("The step-cost model against measured ITL (docs/steps.md)", predicted)
    lines += anatomy_section(runs, names, out)
    lines += markdown.figures_section(made)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Written(out / "report.md", verdicts, pair_lines, made)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compare.report",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="FILE|DIR", help="results files written by python -m compare, or folders"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report"), help="where report.md and the figures go (default: report/)"
    )
    parser.add_argument("--recompute", action="store_true", help="derive every summary again from the raw records")
    parser.add_argument(
        "--vs", type=Path, metavar="B.json", help="compare the one FILE (A) with this run (B), cell by cell"
    )
    parser.add_argument(
        "--min-effect",
        type=float,
        default=100 * MIN_EFFECT,
        metavar="PCT",
        help=f"--vs: smallest difference called significant (default {100 * MIN_EFFECT:g}%%)",
    )
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write OUT/report.html: one self-contained page (no network to view it) with interactive plots "
        "and a timeline per cell",
    )
    parser.add_argument(
        "--trace",
        nargs="?",
        const="all",
        metavar="RUN:CELL",
        help="write each cell (or the one named) as Chrome Trace Event JSON under OUT/traces/, for Perfetto or "
        "chrome://tracing: requests, engine steps, harness on one clock",
    )
    parser.add_argument(
        "--timeline", metavar="RUN:CELL", help="the cell drawn as a per-request timeline (e.g. vllm:c8-in512)"
    )
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.paths, args.recompute)
        console = Console(width=None if sys.stdout.isatty() else 200)
        if args.vs:
            if len(runs) != 1:
                raise SystemExit("error: --vs compares one run (A) with another (B): give exactly one FILE")
            (b,) = load_runs([str(args.vs)], args.recompute)
            print("\n".join(vs_lines(runs[0], b, compare_runs(runs[0], b, args.min_effect / 100))))
            return 0
        if len(runs) == 1:
            print_report(runs[0].doc, console)
        started = time.perf_counter()
        written = write_report(runs, args.out, args.timeline)
        traces = write_traces(runs, unique_labels(runs), args.trace, args.out) if args.trace else []
        page = write_page(runs, written.path, args.timeline) if args.html else None
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    for machine, verdicts in written.verdicts.items():
        console.print(f"== {machine}", highlight=False, markup=False)
        for v in verdicts:
            console.print(f"{v.id} {v.verdict}: {v.effect or v.missing}", highlight=False, markup=False)
    for line in written.pair_lines:
        console.print(line, highlight=False, markup=False)
    if page is not None:
        console.print(f"html: {page} (self-contained: open it in any browser, offline)", highlight=False)
    if traces:
        console.print(f"traces: {len(traces)} in {traces[0].parent} (Perfetto, chrome://tracing)", highlight=False)
    console.print(
        f"report: {written.path} ({len(written.figures)} figures, {len(runs)} files, "
        f"{time.perf_counter() - started:.1f} s)",
        highlight=False,
        markup=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
