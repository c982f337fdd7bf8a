"""How long the event loop waited: the wall time it spent blocked in its selector (for I/O or a timer), which is
the time the client was idle. Its complement over a cell is the loop's busy share, the client-bound criterion.

A loop thread's CPU share cannot tell a client that waited for the engine from one that was runnable but had
its core taken by another process: on a 2-core host with a CPU hog on the harness's core, a client-bound cell
read a CPU share of 0.50 while its loop waited 6 ms in 0.5 s (docs/measurements.md). Both latencies and the
verdict depend on whether chunks sat unread, which is what the busy share measures. The wait includes taking
the GIL back after the selector wakes, so a worker thread holding the GIL (hf, llama.cpp) counts as idle time.

Measured by wrapping the running loop's selector `select` (one clock read on each side of it, per loop
iteration). Loops without a Python selector (uvloop) give None, and the CPU share stands in.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns


class LoopWaits:
    """The selector's wait time, accumulated since it was installed on one loop."""

    def __init__(self, select):
        self._select = select
        self.waited_ns = 0

    def select(self, timeout=None):
        started = perf_counter_ns()
        try:
            return self._select(timeout)
        finally:
            self.waited_ns += perf_counter_ns() - started


def loop_waits() -> LoopWaits | None:
    """The running loop's wait counter, installed on first use (idempotent); None where the loop has no selector."""
    selector = getattr(asyncio.get_running_loop(), "_selector", None)
    if selector is None or not hasattr(selector, "select"):
        return None
    waits = getattr(selector, "enginebench_waits", None)
    if waits is None:
        waits = LoopWaits(selector.select)
        selector.select = waits.select  # an instance attribute: the loop calls self._selector.select(timeout)
        selector.enginebench_waits = waits
    return waits


def waited_ns() -> int | None:
    waits = loop_waits()
    return waits.waited_ns if waits is not None else None


def busy_figures(wait_ns: int | None, wall_s: float) -> dict[str, float | None]:
    """`loop_wait_s` and `loop_busy_share` (1 - waited / wall) over a window, from its wait-counter difference."""
    if wait_ns is None or not wall_s:
        return {"loop_wait_s": None, "loop_busy_share": None}
    wait_s = wait_ns / 1e9
    return {"loop_wait_s": wait_s, "loop_busy_share": max(0.0, 1.0 - wait_s / wall_s)}
