"""`--host-profile`: py-spy on every process that serves a cell, for the measured part of the cell only.

Around the measured requests (run_cell's window): find the serving processes, start one `py-spy record`
per process (out of process, `--idle --nonblocking`: every thread at the rate, the target never paused),
wait until each says it samples, and stop them all with SIGINT when the last request ends. Each raw
profile (speedscope JSON) is kept next to the results; the cell stores the summary per process, with the
process's own CPU time over the window (from /proc) and what the sampler itself cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from compare.analysis.phases import profile_summary, rules
from compare.run.instruments.servingprocs import ServingProcess, cpu_seconds, serving_processes, thread_cpu_seconds
from engines.base import UsageError

DEFAULT_RATE_HZ = 100
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 60.0
READY_LINE = "Sampling process"


def py_spy_binary() -> str:
    """py-spy next to this Python first (the venv), then on PATH; missing: the one-line fix."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise UsageError("--host-profile needs py-spy: pip install -e '.[anatomy]' (or pip install py-spy==0.4.3)")
    return found


def py_spy_argv(binary: str, pid: int, rate_hz: int, output: Path) -> list[str]:
    return [
        binary,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate_hz),
        "--format",
        "speedscope",
        "--output",
        str(output),
        "--idle",
        "--nonblocking",
        "--full-filenames",
    ]


class HostProfiler:
    """An async context manager around the measured part of one cell; `result` holds what it found."""

    def __init__(
        self,
        out_dir: Path,
        rate_hz: int = DEFAULT_RATE_HZ,
        anatomy: dict[str, Any] | None = None,
        harness_pid: int | None = None,
    ):
        self.out_dir, self.rate_hz = out_dir, rate_hz
        self.anatomy = anatomy or {}
        self.harness_pid = harness_pid or os.getpid()
        self.binary = py_spy_binary()
        self.result: dict[str, Any] | None = None
        self._running: list[tuple[ServingProcess, asyncio.subprocess.Process, Path]] = []
        self._failed: list[dict[str, Any]] = []

    async def __aenter__(self) -> HostProfiler:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        processes, self._left_out = serving_processes(self.harness_pid, self.anatomy.get("roles", ()))
        for process in processes:
            output = self.out_dir / f"{process.label}.speedscope.json"
            spy = await asyncio.create_subprocess_exec(
                *py_spy_argv(self.binary, process.pid, self.rate_hz, output),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            self._running.append((process, spy, output))
        ready = await asyncio.gather(*(self._ready(spy) for _, spy, _ in self._running))
        self._failed = [
            {"role": p.role, "pid": p.pid, "error": error} for (p, _, _), error in zip(self._running, ready) if error
        ]
        self._running = [running for running, error in zip(self._running, ready) if not error]
        self._cpu0 = {p.pid: cpu_seconds(p.pid) for p, _, _ in self._running}
        self._threads0 = {p.pid: thread_cpu_seconds(p.pid) for p, _, _ in self._running}
        self._spy_cpu0 = {spy.pid: cpu_seconds(spy.pid) for _, spy, _ in self._running}
        self._wall0 = time.perf_counter_ns()
        return self

    async def _ready(self, spy: asyncio.subprocess.Process) -> str | None:
        """None once py-spy samples; else why it did not (its own words)."""
        seen: list[str] = []
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while True:
                    line = (await spy.stdout.readline()).decode(errors="replace")
                    if not line:
                        await spy.wait()
                        return f"py-spy exited {spy.returncode}: {' '.join(seen)[-300:] or 'no output'}"
                    if READY_LINE in line:
                        return None
                    seen.append(line.strip())
        except TimeoutError:
            spy.kill()
            return f"py-spy did not start sampling within {READY_TIMEOUT_S:g} s: {' '.join(seen)[-300:]}"

    async def __aexit__(self, *exc_info) -> None:
        wall_s = (time.perf_counter_ns() - self._wall0) / 1e9
        cpu = {p.pid: _delta(self._cpu0[p.pid], cpu_seconds(p.pid)) for p, _, _ in self._running}
        threads = {p.pid: _thread_deltas(self._threads0[p.pid], thread_cpu_seconds(p.pid)) for p, _, _ in self._running}
        spy_cpu = {spy.pid: _delta(self._spy_cpu0[spy.pid], cpu_seconds(spy.pid)) for _, spy, _ in self._running}
        for _, spy, _ in self._running:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
        await asyncio.gather(*(self._finish(spy) for _, spy, _ in self._running))
        rule_list = rules(self.anatomy.get("phases", ()))
        processes = [
            self._summary(process, output, wall_s, cpu[process.pid], spy_cpu[spy.pid], rule_list, threads[process.pid])
            for process, spy, output in self._running
        ]
        self.result = {
            "sampler": {"tool": "py-spy", "rate_hz": self.rate_hz, "flags": ["--idle", "--nonblocking"]},
            "wall_s": wall_s,
            "processes": processes + self._failed,
            "not_sampled": self._left_out,
        }

    async def _finish(self, spy: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await spy.stdout.read()
                await spy.wait()
        except TimeoutError:
            spy.kill()
            await spy.wait()

    def _summary(
        self,
        process: ServingProcess,
        output: Path,
        wall_s: float,
        cpu_s: float | None,
        spy_cpu_s: float | None,
        rule_list,
        thread_cpu_s: dict[int, float],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "role": process.role,
            "pid": process.pid,
            "cmdline": process.cmdline,
            "profile_file": output.name,
            "wall_s": wall_s,
            "cpu_share": cpu_s / wall_s if cpu_s is not None and wall_s else None,
            "sampler_cpu_share": spy_cpu_s / wall_s if spy_cpu_s is not None and wall_s else None,
        }
        try:
            thread_cpu_share = {tid: seconds / wall_s for tid, seconds in thread_cpu_s.items()} if wall_s else {}
            summary = profile_summary(json.loads(output.read_text()), rule_list, thread_cpu_share)
        except (OSError, ValueError, KeyError) as exc:
            return {**entry, "error": f"no profile from py-spy: {type(exc).__name__}: {exc}"}
        expected = wall_s * self.rate_hz
        return {
            **entry,
            **summary,
            "expected_samples": expected,
            "sampler_kept_up": summary["samples"] / expected if expected else None,
        }


def _delta(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


def _thread_deltas(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
