"""`--nsys CELL`: the harness runs itself again under Nsight Systems, which captures only while the engine's
CUDA profiler is on.

The engine's profiler window (compare/run/instruments/observe.py) opens around CELL's measured part in `cuda` kind:
cudaProfilerStart/Stop in the processes that launch kernels (vLLM `ProfilerConfig(profiler="cuda")` in its
workers, SGLang's `CUDA_PROFILER` activity in its scheduler, `torch.cuda.profiler` for hf). nsys runs with
`--capture-range=cudaProfilerApi`, so the report holds that cell only, with the harness's NVTX ranges
(compare/run/instruments/nvtx_marks.py) naming the cell and each request. The engines' layerwise NVTX switches are
knobs:
`--engine-arg vllm.enable_layerwise_nvtx_tracing=true`, `--engine-arg sglang.enable_layerwise_nvtx_marker=true`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engines.base import UsageError

UNDER_NSYS = "ENGINEBENCH_UNDER_NSYS"  # set in the run nsys starts, so it does not start nsys again
CUDA_PROFILER_ENGINES = ("vllm", "sglang", "hf")  # in-process engines whose profiler window has a `cuda` kind


def under_nsys() -> bool:
    return os.environ.get(UNDER_NSYS) == "1"


def nsys_binary() -> str:
    found = shutil.which("nsys")
    if not found:
        raise UsageError(
            "--nsys needs Nsight Systems' `nsys` on the PATH (NVIDIA's nsight-systems package); "
            "without it, drop --nsys (--profile CELL gives the engine's torch trace)"
        )
    return found


def nsys_argv(nsys: str, argv: list[str], report: Path) -> list[str]:
    """The command that reruns `python -m compare ARGV` under nsys, capturing between cudaProfilerStart and Stop."""
    return [
        nsys,
        "profile",
        "--capture-range=cudaProfilerApi",
        "--capture-range-end=stop",
        "--trace=cuda,nvtx,osrt",
        "--trace-fork-before-exec=true",
        "--cuda-graph-trace=node",
        "--force-overwrite=true",
        "--output",
        str(report),
        sys.executable,
        "-m",
        "compare",
        *argv,
    ]


def check_nsys(cell: str | None, engines: tuple[str, ...], mode: str, profile: str | None) -> None:
    """--nsys CELL: nsys installed, in-process engines that have a CUDA profiler window, not beside --profile."""
    if cell is None:
        return
    if profile is not None:
        raise UsageError("--nsys and --profile both open the engine's profiler window; give one of them")
    if mode != "inprocess":
        raise UsageError(f"--nsys profiles in-process engines; drop --mode {mode}")
    lacking = [name for name in engines if name not in CUDA_PROFILER_ENGINES]
    if lacking:
        raise UsageError(
            f"--nsys: engine(s) {', '.join(lacking)} have no CUDA profiler window; "
            f"--nsys works with {', '.join(CUDA_PROFILER_ENGINES)}"
        )
    if not under_nsys():
        nsys_binary()


def run_under_nsys(argv: list[str], out_dir: Path) -> int:
    """Start this same command under nsys and wait for it; its exit status is this run's."""
    report = out_dir / "nsys" / f"enginebench-{time.strftime('%Y%m%dT%H%M%S')}"
    report.parent.mkdir(parents=True, exist_ok=True)
    command = nsys_argv(nsys_binary(), argv, report)
    print(f"nsys: {shlex.join(command)}", file=sys.stderr)
    code = subprocess.call(command, env={**os.environ, UNDER_NSYS: "1"})
    print(f"nsys: report {report}.nsys-rep (exit {code})", file=sys.stderr)
    return code
