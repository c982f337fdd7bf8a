"""GPU sampler: pynvml in a background thread, one sample every `interval_ms` (<= 50 ms).

Memory is device-wide (`nvmlDeviceGetMemoryInfo.used`), so it includes every process on the GPU;
the caching allocators of vLLM and SGLang reserve most of it at start, which is what it shows.
Every GPU NVML enumerates is sampled (NVML ignores CUDA_VISIBLE_DEVICES), each under `per_gpu`, and `total`
sums or averages them. Without a GPU (or without pynvml) the sampler reports "not available" and never fails a run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

Reading = dict[str, float]  # memory_used_mib, utilization_pct, power_w


def nvml_reader() -> tuple[Callable[[], list[Reading]] | None, dict[str, Any]]:
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:
        return None, {"available": False, "reason": f"no NVIDIA GPU visible ({type(exc).__name__}: {exc})"}
    if count == 0:
        return None, {"available": False, "reason": "NVML reports 0 GPUs"}
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def read() -> list[Reading]:
        readings = []
        for handle in handles:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            try:
                power_w = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except Exception:
                power_w = float("nan")
            readings.append(
                {"memory_used_mib": memory.used / 2**20, "utilization_pct": float(util.gpu), "power_w": power_w}
            )
        return readings

    return read, {"available": True, "num_gpus": count}


class GpuSampler:
    def __init__(self, interval_ms: float = 50.0, reader: Callable[[], list[Reading]] | None = None):
        self.interval_s = min(interval_ms, 50.0) / 1e3
        if reader is None:
            reader, self.status = nvml_reader()
        else:
            self.status = {"available": True, "num_gpus": None}
        self._read = reader
        self._samples: list[tuple[int, list[Reading]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._read is None:
            return
        self._samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._samples.append((time.perf_counter_ns(), self._read()))
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> dict[str, Any]:
        if self._read is None or self._thread is None:
            return dict(self.status)
        self._stop.set()
        self._thread.join()
        self._thread = None
        return {**self.status, "interval_ms": self.interval_s * 1e3, **summarize_samples(self._samples)}


def summarize_samples(samples: list[tuple[int, list[Reading]]]) -> dict[str, Any]:
    if not samples:
        return {"num_samples": 0}
    per_gpu = []
    for index in range(len(samples[0][1])):
        memory = [s[1][index]["memory_used_mib"] for s in samples]
        util = [s[1][index]["utilization_pct"] for s in samples]
        power = [s[1][index]["power_w"] for s in samples if s[1][index]["power_w"] == s[1][index]["power_w"]]
        per_gpu.append(
            {
                "gpu": index,
                "memory_used_mib_peak": max(memory),
                "memory_used_mib_mean": sum(memory) / len(memory),
                "utilization_pct_mean": sum(util) / len(util),
                "power_w_mean": sum(power) / len(power) if power else None,
            }
        )
    return {"num_samples": len(samples), "per_gpu": per_gpu, "total": _totals(samples, per_gpu)}


def _totals(samples: list[tuple[int, list[Reading]]], per_gpu: list[dict[str, Any]]) -> dict[str, Any]:
    """Over every sampled GPU: memory and power summed, utilization averaged."""
    memory_sums = [sum(r["memory_used_mib"] for r in readings) for _, readings in samples]
    power = [g["power_w_mean"] for g in per_gpu if g["power_w_mean"] is not None]
    return {
        "num_gpus": len(per_gpu),
        "memory_used_mib_peak": max(memory_sums) if memory_sums else 0.0,
        "memory_used_mib_mean": sum(g["memory_used_mib_mean"] for g in per_gpu),
        "utilization_pct_mean": sum(g["utilization_pct_mean"] for g in per_gpu) / len(per_gpu) if per_gpu else None,
        "power_w_mean": sum(power) if power else None,
    }
