"""Energy over the measured part of a cell, from cumulative counters read at its start and its end.

- GPU: NVML's total energy counter per GPU (`nvmlDeviceGetTotalEnergyConsumption`, mJ since the driver
  loaded; Volta and later). Every GPU NVML enumerates is read, as the GPU sampler does.
- CPU: RAPL package domains under /sys/class/powercap (`intel-rapl:N/energy_uj`, µJ). A counter wraps at its
  `max_energy_range_uj`; one wrap per window is undone. Sub-domains (`intel-rapl:N:M`: cores, DRAM) are parts
  of their package and are not added to it.
Where a counter cannot be read, the cell records `{"available": false, "reason": ...}` and no number.
Joules per output token and per request come from the cell's records afterwards (compare/analysis/cell.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Callable

POWERCAP = Path("/sys/class/powercap")


@dataclass
class EnergyCounter:
    """Cumulative joules per device; `wrap_j` per device is where its counter starts again at 0 (None: never)."""

    method: str
    devices: list[str]
    read_j: Callable[[], list[float]]
    wrap_j: list[float | None]

    def spent_j(self, before: list[float], after: list[float]) -> list[float]:
        spent = []
        for start, end, wrap in zip(before, after, self.wrap_j):
            delta = end - start
            spent.append(delta + wrap if delta < 0 and wrap else delta)
        return spent


def nvml_counter() -> EnergyCounter | str:
    """NVML's energy counter on every GPU, or why there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not handles:
            return "NVML reports 0 GPUs"
        names = [_text(pynvml.nvmlDeviceGetName(h)) for h in handles]
        for handle in handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises NVMLError_NotSupported before Volta
    except Exception as exc:
        return f"no NVML energy counter ({type(exc).__name__}: {exc})"

    def read_j() -> list[float]:
        return [pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3 for h in handles]

    return EnergyCounter(
        "nvml total energy counter", [f"gpu{i} {n}" for i, n in enumerate(names)], read_j, [None] * len(handles)
    )


def rapl_counter(root: Path = POWERCAP) -> EnergyCounter | str:
    """RAPL's package counters under `root`, or why there are none (absent, or readable by root only)."""
    if not root.is_dir():
        return f"no RAPL: {root} does not exist (a VM or a non-Intel/AMD CPU)"
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not packages:
        return f"no RAPL package domain under {root}"
    try:
        names = [(p / "name").read_text().strip() for p in packages]
        wraps = [int((p / "max_energy_range_uj").read_text()) / 1e6 for p in packages]
        [int((p / "energy_uj").read_text()) for p in packages]
    except (OSError, ValueError) as exc:
        return f"RAPL not readable ({type(exc).__name__}: {exc}); energy_uj is root-only on most kernels"

    def read_j() -> list[float]:
        return [int((p / "energy_uj").read_text()) / 1e6 for p in packages]

    return EnergyCounter("rapl powercap", [f"{p.name} {n}" for p, n in zip(packages, names)], read_j, wraps)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def energy_counters() -> dict[str, EnergyCounter | str]:
    """What this machine can count, probed once per run: {"gpu": counter or reason, "cpu": counter or reason}."""
    return {"gpu": nvml_counter(), "cpu": rapl_counter()}


def describe(counters: dict[str, EnergyCounter | str]) -> dict[str, str]:
    """For the results header: each source's method and devices, or `unavailable (reason)`."""
    return {
        name: f"unavailable ({c})" if isinstance(c, str) else f"{c.method}: {', '.join(c.devices)}"
        for name, c in counters.items()
    }


class EnergyMeter:
    """An async context manager around one cell's measured part; `result()` holds joules per source."""

    def __init__(self, counters: dict[str, EnergyCounter | str]):
        self.counters = counters
        self._before: dict[str, list[float] | str] = {}
        self._after: dict[str, list[float] | str] = {}
        self.window_ns = 0

    async def __aenter__(self) -> EnergyMeter:
        self._before = {name: _read(c) for name, c in self.counters.items()}
        self._start_ns = perf_counter_ns()
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.window_ns = perf_counter_ns() - self._start_ns
        self._after = {name: _read(c) for name, c in self.counters.items()}

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window_s": self.window_ns / 1e9}
        for name, counter in self.counters.items():
            before, after = self._before.get(name), self._after.get(name)
            if isinstance(counter, str) or isinstance(before, str) or isinstance(after, str) or before is None:
                reason = next(x for x in (counter, before, after, "the window never opened") if isinstance(x, str))
                out[name] = {"available": False, "reason": reason}
                continue
            spent = counter.spent_j(before, after)
            out[name] = {
                "available": True,
                "method": counter.method,
                "devices": counter.devices,
                "joules": sum(spent),
                "per_device_joules": spent,
                "mean_power_w": sum(spent) / (self.window_ns / 1e9) if self.window_ns else None,
            }
        return out


def _read(counter: EnergyCounter | str) -> list[float] | str:
    if isinstance(counter, str):
        return counter
    try:
        return counter.read_j()
    except Exception as exc:  # a counter that read at start may fail later (a GPU fallen off the bus)
        return f"counter read failed ({type(exc).__name__}: {exc})"
