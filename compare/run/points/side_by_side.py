"""--start-together: the run's engines side by side on one big GPU. Every engine runs in its own child process
(as an isolated point, compare/run/points/isolate.py), all started at once; once every engine is up they are released
one at a time (compare/run/points/together.py), each measured while the others wait idle, then the pairs are compared
as a plain run compares them."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from compare.analysis.pairs import compare_pairs, comparison_lines
from compare.run.config import RunConfig
from compare.run.points.isolate import ChildOutcome, child_echo, finish_child, start_child
from compare.run.points.points import Point, points_for
from compare.run.points.sweep import _exit_code, _files, _load_runs, child_argv
from compare.run.points.together import gpu_processes, release_in_turn

DEFAULT_READY_LIMIT_S = 7200.0


def run_command_together(config: RunConfig) -> int:
    """The whole command with --start-together: its points (one per engine and mode), started together."""
    points, _ = points_for(config.engines, config.sweeps, config.ablation, config.mode)
    return run_points_together(config, points)


def run_points_together(config: RunConfig, points: list[Point]) -> int:
    """--start-together: every engine in its own child process, all started at once; once all are up they are
    released one at a time, each measured while the others wait idle (compare/run/points/together.py). Its inputs
    were checked first (compare/cli/checks.py check_together)."""
    root = config.out_dir
    barrier = root / "barriers" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    print(f"== {len(points)} engines started together, measured one at a time (barrier {barrier})", flush=True)
    running = {
        point.run_name: start_child(
            [*child_argv(config, point, root), "--start-barrier", str(barrier)],
            root / "logs" / f"{point.slug}.log",
            child_echo(point.run_name),
        )
        for point in points
    }
    outcomes: dict[str, ChildOutcome] = {}

    def wait_turn(label: str, member) -> None:
        print(f"-- released: {label}", flush=True)
        outcomes[label] = finish_child(member, config.deadline_s, check_release=False)

    try:
        records = release_in_turn(
            barrier, running, config.deadline_s or DEFAULT_READY_LIMIT_S, wait_turn, gpu_processes
        )
    except KeyboardInterrupt:
        for member in running.values():
            if member.poll() is None:
                finish_child(member, 1, check_release=False)
        print("interrupted: finished cells are on disk", file=sys.stderr)
        return 130
    for label, member in running.items():  # one that was never released: exited before, or stopped now
        outcomes.setdefault(label, finish_child(member, 1, check_release=False))
    for record in records:
        outcome = outcomes[record["label"]]
        print(
            f"-- {record['label']}: {outcome.status} ({outcome.reason}), up before the barrier: "
            f"{record['state_at_barrier'] == 'ready'}, measured {record.get('measured_s', 0):.0f} s",
            flush=True,
        )
    files = [_files(root, point, 0) for point in points]
    runs = _load_runs([{"files": f} for f in files])
    for pair_name, comparison in compare_pairs([run for point_runs in runs for run in point_runs]):
        for line in comparison_lines(pair_name, comparison):
            print(line, flush=True)
    return _exit_code([outcomes[point.run_name].status for point in points])
