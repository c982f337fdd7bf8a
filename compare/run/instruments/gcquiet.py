"""No garbage-collector pauses inside a cell's measured window, and the ones that happen anyway, observed.

Python's collector stops the event loop while it runs: at 1000 req/s the open-loop benchmark's send error went
from p99 3 ms with the collector off to 21-38 ms with it on (benchmarks/open_loop_send_error.py). So, as `timeit`
does while it times:
- before the window: collect what the previous cell left, then `gc.freeze()` (the planned requests, the engine
  and everything built so far move to the permanent generation, out of every later scan);
- inside it: `gc.disable()`; the window's own garbage (records, chunks) waits;
- after it: `gc.unfreeze()`, the collector back as it was; the next cell's collect takes the garbage.
`gc.callbacks` records every collection that still runs inside the window (an explicit `gc.collect()` by a
library, or all of them with the policy `enabled`): count, total and longest, per generation; a pause longer than
1 ms is a warning (compare/analysis/checks.py).
"""

from __future__ import annotations

import gc
from collections import Counter
from time import perf_counter_ns
from typing import Any


MAX_PAUSES_KEPT = 1000


class GcQuiet:
    """An async context manager around the measured part of a cell (compare/run/instruments/cellwindow.py)."""

    def __init__(self, policy: str = "disabled"):
        if policy not in ("disabled", "enabled"):
            raise ValueError(f"gc policy {policy!r}: disabled or enabled")
        self.policy = policy
        self.pauses_ns: list[tuple[int, int]] = []  # (generation, duration) of each collection in the window
        self.starts_ns: list[int] = []  # and when each began (perf_counter_ns)
        self.frozen_objects = 0
        self._started_ns: int | None = None
        self._was_enabled = True

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_ns = perf_counter_ns()
        elif self._started_ns is not None:
            self.pauses_ns.append((info.get("generation", -1), perf_counter_ns() - self._started_ns))
            self.starts_ns.append(self._started_ns)
            self._started_ns = None

    async def __aenter__(self) -> GcQuiet:
        gc.collect()  # what the previous cell left, before the window and outside it
        self._was_enabled = gc.isenabled()
        if self.policy == "disabled":
            gc.freeze()
            self.frozen_objects = gc.get_freeze_count()
            gc.disable()
        gc.callbacks.append(self._on_collection)
        return self

    async def __aexit__(self, *exc_info) -> None:
        gc.callbacks.remove(self._on_collection)
        if self.policy == "disabled":
            gc.unfreeze()
            if self._was_enabled:
                gc.enable()

    def result(self, origin_ns: int | None = None) -> dict[str, Any]:
        """Counts and durations; with the cell's origin, each pause's start on its records' clock too (the first
        MAX_PAUSES_KEPT, for the trace: compare/report/trace.py)."""
        durations_ms = [ns / 1e6 for _, ns in self.pauses_ns]
        by_generation = dict(Counter(str(generation) for generation, _ in self.pauses_ns))
        return {
            "policy": self.policy,
            "frozen_objects": self.frozen_objects,
            "collections": len(durations_ms),
            "total_ms": sum(durations_ms),
            "max_ms": max(durations_ms, default=0.0),
            "by_generation": by_generation,
            **(
                {
                    "pauses": [
                        {"at_ns": start - origin_ns, "ms": ns / 1e6, "generation": generation}
                        for start, (generation, ns) in zip(self.starts_ns[:MAX_PAUSES_KEPT], self.pauses_ns)
                    ]
                }
                if origin_ns is not None and self.pauses_ns
                else {}
            ),
        }
