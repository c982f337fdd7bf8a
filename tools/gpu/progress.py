"""What `campaign poll` and `campaign plan` print: the run's state, progress lines from the step logs, whether
the background run is still alive, and the plan's lease timeline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tools.gpu.calls import CALLS, ROOT
from tools.gpu.campaign_plan import LEASE_MARGIN_S, CampaignStep, lease_timeline
from tools.gpu.installs import installs


def run_alive(home: Path) -> bool:
    """The background run's process is still there (False when it was never started here)."""
    pid_file = home / "pid"
    if not pid_file.is_file():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return not _zombie(int(pid_file.read_text()))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def progress_lines(state: dict[str, Any], home: Path) -> list[str]:
    lines = [f"campaign: finished={state.get('finished')} deadline {state.get('deadline_s')} s"]
    if state.get("run_died"):
        lines += ["  THE CAMPAIGN'S RUN DIED; campaign.log ends:", *(f"    {line}" for line in state["run_died"])]
    if state.get("compile_cache_raw_bytes"):
        lines.append(
            f"  compile caches: {state['compile_cache_raw_bytes'] / 2**20:.0f} MiB raw; out: "
            f"{state.get('compile_cache_out', 'not asked')}"
        )
    if state.get("out_problems"):
        lines.append(f"  $OUT would not come back whole: {state['out_problems']}")
    for engine, done in installs(home).items():
        lines.append(f"  install {engine}: ok={done.get('ok')} {done.get('wall_s', '')} s {done.get('error', '')}")
    for entry in state.get("steps", []):
        lines.append(
            f"  {entry['step']:24} {entry['outcome']}  rc={entry.get('returncode')} wall={entry.get('wall_s')}"
        )
        if entry.get("start_phases"):
            lines.append(f"    start phases: {entry['start_phases']}")
        if entry.get("checks"):
            lines.append(f"    checks: {entry['checks']}")
        log = home / "results" / entry["step"] / f"{entry['step']}.log"
        if entry["outcome"].startswith(("running", "starting")) and log.is_file():
            lines += [f"    {line}" for line in progress_of(log.read_text(errors="replace"))[-6:]]
    return lines


def print_plan(steps: list[CampaignStep]) -> None:
    """Each unit's estimate, and the lease timeline: when the required units end, and the margin to 900 s."""
    calls_file = ROOT / CALLS / "calls.json"
    num_calls = len(json.loads(calls_file.read_text())["calls"]) if calls_file.is_file() else 4  # rehearsed 2026-12-07
    timeline = lease_timeline(steps, num_calls)
    for row in timeline["units"]:
        print(
            f"t={row['starts_s']:4d} s  ~{row['estimate_s']:4d} s  {'optional' if row['optional'] else 'REQUIRED'}  "
            f"{' + '.join(row['unit'])}{' (started together)' if len(row['unit']) > 1 else ''}"
        )
    print(
        f"{timeline['calls']} staging call(s); the required units and the last poll end at "
        f"~{timeline['required_end_s']} s "
        f"of the {timeline['lease_s']} s lease: {timeline['margin_s']} s to spare "
        f"({'ok' if timeline['fits'] else 'UNDER'} the {LEASE_MARGIN_S} s margin)"
    )
    for planned in steps:
        print(f"  {planned.step.name}: {' '.join(planned.step.argv[1:])}")


LABEL = re.compile(r"^\[[^\]]+\] ")  # an isolated child's lines: "[baseline] cell c1: ..."


def progress_of(log_text: str) -> list[str]:
    """The harness's progress lines (cells, scenarios, the barrier), with or without an isolated child's label."""
    return [line for line in log_text.splitlines() if LABEL.sub("", line).startswith(("cell ", "== ", "-- point"))]
