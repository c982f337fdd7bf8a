"""What the harness watches around one cell besides the requests: its own CPU, the engine's telemetry, and
an optional profiler window.

- Harness load: process CPU time and the event-loop thread's CPU time over the cell, each as a share of
  one core over the cell's wall time, and the loop's busy share: 1 - the time it waited in its selector / wall
  (compare/run/instruments/loopwaits.py). In-process engines run part of themselves in this process (vLLM's output
  handler runs on the same loop), so these bound what the harness itself used.
- Telemetry: the rows an engine appends per step (`telemetry_rows`), or snapshots the harness polls
  (`telemetry_snapshot()`) every `engine.telemetry_poll_interval_s`, each stamped on perf_counter; stored as
  offsets from the cell's origin. A poll is not free: it costs the engine time (a vLLM server spent 6 ms of
  its one core on each /metrics scrape, which at 50 ms slowed its decode by 12%), so each poll is timed and
  `polls` records how much of the cell they took.
- Profiler: around the chosen cell, the engine's own profiler; the cell is marked as profiled.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from compare.run.instruments.loopwaits import busy_figures, waited_ns
from engines.base import Engine


class CellObserver:
    def __init__(self, engine: Engine, cell_id: str, profile: str | None, profile_dir: Path):
        self.engine, self.cell_id = engine, cell_id
        self.profile_wanted = profile is not None and profile in ("", cell_id)
        self.profile_dir = profile_dir
        self.poll_interval_s = engine.telemetry_poll_interval_s  # 0: never
        self.polled: list[dict[str, Any]] = []
        self.poll_ns: list[int] = []  # each poll's duration, as the harness waited for it
        self.rows_from = len(engine.telemetry_rows) if engine.telemetry_rows is not None else None
        self.profiled: dict[str, Any] | None = None
        self._poller: asyncio.Task | None = None

    async def start(self) -> None:
        if self.profile_wanted:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            started = await self.engine.start_profile(str(self.profile_dir))
            self.profiled = {"started": started, "reason": None if started else "the engine has no profiler window"}
        if self.rows_from is None and self.poll_interval_s and await self.engine.telemetry_snapshot() is not None:
            self._poller = asyncio.create_task(self._poll())
        self.waited0 = waited_ns()
        self.cpu0, self.thread0, self.wall0 = time.process_time(), time.thread_time(), perf_counter_ns()
        self.started_unix = time.time() - 1  # file times have 1 s resolution on some file systems

    async def _poll(self) -> None:
        while True:
            asked = perf_counter_ns()
            snapshot = await self.engine.telemetry_snapshot()
            self.poll_ns.append(perf_counter_ns() - asked)
            if snapshot:
                self.polled.append({"t_ns": perf_counter_ns(), **snapshot})
            await asyncio.sleep(self.poll_interval_s)

    async def stop(self, origin_ns: int | None) -> dict[str, Any]:
        wall_s = (perf_counter_ns() - self.wall0) / 1e9
        cpu_s, thread_s = time.process_time() - self.cpu0, time.thread_time() - self.thread0
        waited = waited_ns()
        busy = busy_figures(waited - self.waited0 if waited is not None and self.waited0 is not None else None, wall_s)
        if self._poller is not None:
            self._poller.cancel()
        if self.profiled and self.profiled["started"]:
            trace = await self.engine.stop_profile()
            self.profiled["trace"] = trace
            if trace and Path(trace).is_dir():
                self.profiled["files"] = sorted(
                    p.name for p in Path(trace).iterdir() if p.stat().st_mtime >= self.started_unix
                )
        extra: dict[str, Any] = {
            "harness": {
                "wall_s": wall_s,
                "process_cpu_s": cpu_s,
                "loop_thread_cpu_s": thread_s,
                "process_cpu_share": cpu_s / wall_s if wall_s else None,
                "loop_thread_cpu_share": thread_s / wall_s if wall_s else None,
                **busy,
            }
        }
        rows = self.engine.telemetry_rows[self.rows_from :] if self.rows_from is not None else self.polled
        source = "engine steps" if self.rows_from is not None else f"polled every {self.poll_interval_s * 1e3:g} ms"
        if rows and origin_ns is not None:
            extra["telemetry"] = {
                "source": source,
                "rows": [{**row, "t_ns": row["t_ns"] - origin_ns} for row in rows if row["t_ns"] >= origin_ns],
            }
            if self.poll_ns:
                extra["telemetry"]["polls"] = poll_cost(self.poll_ns, self.poll_interval_s, wall_s)
        if self.profiled is not None:
            extra["profiled"] = self.profiled
        return extra


def poll_cost(poll_ns: list[int], interval_s: float, wall_s: float) -> dict[str, Any]:
    """How long the harness waited on its telemetry polls over the cell: their count, p50 and max, and their
    sum as a share of the cell's wall time (what the engine spent answering them, at most, plus queueing)."""
    poll_ms = np.asarray(poll_ns, dtype=np.float64) / 1e6
    return {
        "count": int(poll_ms.size),
        "interval_ms": interval_s * 1e3,
        "p50_ms": float(np.median(poll_ms)),
        "max_ms": float(poll_ms.max()),
        "busy_share": float(poll_ms.sum() / 1e3 / wall_s) if wall_s else None,
    }
