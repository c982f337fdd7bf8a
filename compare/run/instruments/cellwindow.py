"""What opens just before a cell's first measured request and closes after its last one (run_cell's window):
the garbage collector held off (compare/run/instruments/gcquiet.py), the host profiler (--host-profile), the energy
meter
(always), and NVTX ranges (where nvtx is importable).

Entered in that order and left in reverse, so the collect before the window, the energy counters and the NVTX
cell range span the requests and not py-spy's start, which waits until every sampler says it samples.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.run.instruments.energy import EnergyCounter, EnergyMeter, describe, energy_counters
from compare.run.instruments.gcquiet import GcQuiet
from compare.run.instruments.nvtx_marks import NvtxMarks, load_nvtx


@dataclass
class Instruments:
    """Probed once per run: which energy counters this machine has, and the nvtx module if installed."""

    energy: dict[str, EnergyCounter | str]
    nvtx: Any | None
    nvtx_status: str

    @classmethod
    def probe(cls) -> Instruments:
        nvtx, status = load_nvtx()
        return cls(energy_counters(), nvtx, status)

    def header(self) -> dict[str, Any]:
        return {"energy": describe(self.energy), "nvtx": self.nvtx_status}


class CellWindow:
    def __init__(self, cell_id: str, instruments: Instruments, host_profiler=None, gc_policy: str = "disabled"):
        self.gc = GcQuiet(gc_policy)
        self.host_profiler = host_profiler
        self.energy = EnergyMeter(instruments.energy)
        self.marks = NvtxMarks(instruments.nvtx, cell_id) if instruments.nvtx is not None else None
        self._stack: contextlib.AsyncExitStack | None = None
        self.opened = False

    async def __aenter__(self) -> CellWindow:
        self._stack = contextlib.AsyncExitStack()
        for part in (self.gc, self.host_profiler, self.energy, self.marks):
            if part is not None:
                await self._stack.enter_async_context(part)
        self.opened = True
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        return await self._stack.__aexit__(*exc_info)

    def observed(self, results_dir: Path, origin_ns: int | None = None) -> dict[str, Any]:
        """What the cell stores: `energy` (joules per source), `harness_gc` (pauses on the records' clock from
        `origin_ns`), `nvtx` (what was marked), `host_profile`."""
        if not self.opened:
            return {}
        out: dict[str, Any] = {"energy": self.energy.result(), "harness_gc": self.gc.result(origin_ns)}
        if self.marks is not None:
            out["nvtx"] = self.marks.summary()
        profiler = self.host_profiler
        if profiler is not None and profiler.result:
            out["host_profile"] = {**profiler.result, "folder": str(profiler.out_dir.relative_to(results_dir))}
        return out
