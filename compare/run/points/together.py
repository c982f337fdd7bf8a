"""Engines started together on one big GPU, then measured one at a time (a start barrier).

Engine start measures nothing and, on a lent GPU, costs most of a lease (vLLM ~3 min, SGLang ~4.5 min on the
8B model). On a GPU that holds several engines (an H200 holds two 8B engines with equal KV budgets), each
engine's process starts at once and waits at a barrier: it writes `<folder>/<label>.ready` once its engine is
up, then waits for `<folder>/<label>.go`. The coordinator releases one engine only when every engine is up
(no start's compile or graph capture overlaps a measurement), and the next only after the previous has exited,
so a measured engine shares the GPU only with idle engines. What each engine waited, and the GPU memory the
others held when it was released, are recorded with its results.

    child:        python -m compare ... --start-barrier DIR        (the engine process; `arrive`)
    coordinator:  release_in_turn(DIR, {label: process, ...})     (--start-together, compare/run/points/side_by_side.py)
                  or `release` one label at a time                 (the GPU campaign, tools/gpu/units.py)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

POLL_S = 0.2


class Member(Protocol):
    def poll(self) -> int | None: ...


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


async def arrive(folder: Path, label: str, info: dict[str, Any]) -> dict[str, Any]:
    """The engine is up: say so, then wait for this engine's turn. Returns what the run records."""
    folder.mkdir(parents=True, exist_ok=True)
    arrived = time.monotonic()
    _write_json(folder / f"{label}.ready", {"pid": os.getpid(), **info})
    go = folder / f"{label}.go"
    while not go.is_file():
        await asyncio.sleep(POLL_S)
    released = json.loads(go.read_text() or "{}")
    return {"barrier": str(folder), "label": label, "waited_s": round(time.monotonic() - arrived, 3), **released}


def wait_all_ready(folder: Path, members: dict[str, Member], limit_s: float) -> dict[str, str]:
    """Until every member is up or has exited (or limit_s passes); returns each label's state."""
    deadline = time.monotonic() + limit_s
    while True:
        states = {label: _state(folder, label, member) for label, member in members.items()}
        if all(s != "starting" for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(POLL_S)


def _state(folder: Path, label: str, member: Member) -> str:
    if member.poll() is not None:
        return "exited"
    return "ready" if (folder / f"{label}.ready").is_file() else "starting"


def release(folder: Path, label: str, others: dict[str, Any]) -> None:
    _write_json(folder / f"{label}.go", {"released_unix_s": time.time(), "others": others})


def release_in_turn(
    folder: Path,
    members: dict[str, Member],
    ready_limit_s: float,
    wait_turn: Callable[[str, Member], None],
    gpu_processes: Callable[[], list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Every member starts at once; once all are up, each is released in the given order and waited for
    (`wait_turn` returns when that member has exited or been stopped). Returns one record per member."""
    states = wait_all_ready(folder, members, ready_limit_s)
    records = []
    for label, member in members.items():
        record = {"label": label, "state_at_barrier": states[label]}
        if member.poll() is None:
            waiting = [other for other in members if other != label and members[other].poll() is None]
            others = {"engines": waiting, "gpu_processes": gpu_processes() if gpu_processes else None}
            release(folder, label, others)
            started = time.monotonic()
            wait_turn(label, member)
            record.update(released=True, measured_s=round(time.monotonic() - started, 1), others=others)
        else:
            record.update(released=False)
        records.append(record)
    return records


def gpu_processes() -> list[dict[str, Any]] | None:
    """NVML's compute processes (pid, MiB); None where NVML or the call is missing (some VMs hide them)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        rows = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = proc.usedGpuMemory
                rows.append(
                    {"gpu": index, "pid": proc.pid, "used_mib": None if used is None else round(used / 2**20, 1)}
                )
        return rows
    except Exception:
        return None
