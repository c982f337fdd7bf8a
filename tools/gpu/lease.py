"""The lease, call by call: what to pass to the device tool's `run`, read from the calls `prepare` planned.

    python3 -m tools.gpu.lease                      # the calls of a fresh 900 s lease
    python3 -m tools.gpu.lease --budget-left-s 730  # the final poll, sized from the last reply's lease.budget_left_s

The machine goes back after 30 s idle, so each call follows the last reply at once. Call 1 stages the first
call folder and starts the campaign in the background (its own session, so it outlives the call); each further
staging call holds its parts and prints the campaign's progress; the last call polls until the campaign ends or
its wait runs out, and brings everything back. The same list drives the rehearsal (tools/gpu/rehearse.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.gpu.calls import CALLS, LIMITS, ROOT

ENV = "export PYTHONUNBUFFERED=1; "
POLL_PACK_S = 60  # the last poll's packing and $OUT's transfer back, above its wait
SAFETY_S = 30  # between the last poll's end and the lease's


@dataclass(frozen=True)
class LeaseCall:
    index: int
    command: str
    carry: tuple[str, ...]
    timeout_s: int
    purpose: str

    def to_json(self) -> dict:
        return {
            "call": self.index,
            "command": self.command,
            "carry": list(self.carry),
            "timeout_s": self.timeout_s,
            "purpose": self.purpose,
        }


def staging_calls(calls_plan: dict, deadline_s: float, start_extra: str = "") -> list[LeaseCall]:
    sequence = []
    for row in calls_plan["calls"]:
        folder = row["carry"]
        stage = f"python3 -m tools.gpu.device stage --from {folder}"
        if row["call"] == 1:
            command = f"{ENV}{stage} && python3 -m tools.gpu.campaign start --deadline-s {deadline_s:g}{start_extra}"
            purpose = "machine start; stage; start the campaign in the background"
        else:
            command = f"{ENV}{stage}; python3 -m tools.gpu.campaign poll"
            purpose = "stage; progress"
        sequence.append(LeaseCall(row["call"], command, (folder,), 120, purpose))
    return sequence


def final_poll(index: int, budget_left_s: float, limits=LIMITS) -> LeaseCall:
    """Wait as long as the lease allows: the call's timeout stays under the 600 s a call may run."""
    wait_s = int(max(10, min(limits.call_s - POLL_PACK_S, budget_left_s - POLL_PACK_S - SAFETY_S)))
    command = f"{ENV}python3 -m tools.gpu.campaign poll --wait-s {wait_s}"
    return LeaseCall(
        index, command, (), wait_s + POLL_PACK_S, "wait for the campaign (returns when it ends); bring everything back"
    )


def sequence(calls_plan: dict, budget_left_s: float = LIMITS.lease_s, deadline_s: float = 800.0) -> list[LeaseCall]:
    staging = staging_calls(calls_plan, deadline_s)
    return [*staging, final_poll(len(staging) + 1, budget_left_s - 40 - 25 * len(staging))]


def load_calls_plan(root: Path = ROOT) -> dict:
    path = root / CALLS / "calls.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run python3 -m tools.gpu.prepare first")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.lease", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-left-s", type=float, help="print only the final poll, for this much lease left")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        plan = load_calls_plan()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    calls = [final_poll(len(plan["calls"]) + 1, args.budget_left_s)] if args.budget_left_s else sequence(plan)
    if args.json:
        print(json.dumps([c.to_json() for c in calls], indent=1))
        return 0
    for call in calls:
        print(
            f"call {call.index} ({call.purpose}): timeout_s={call.timeout_s} carry={list(call.carry)}\n  {call.command}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
