"""One engine run in its own child process and session: `python -m compare` for one point.

The child starts a new session (setsid), so whatever it does to its own process group (SGLang's shutdown
kills every child of its process) cannot reach the parent, and the parent can kill everything the child
started (vLLM's EngineCore, SGLang's scheduler) with one killpg. The parent tees the child's output to a
log and the console, enforces a deadline, classifies how the child ended, and confirms with NVML that the
GPU memory the child held is released before the next child starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from compare.run.instruments.gpu import nvml_reader

KILL_GRACE_S = 10.0
INTERRUPT_GRACE_S = 30.0
RELEASE_TOLERANCE_MIB = 512.0
OOM_EVENTS = Path("/sys/fs/cgroup/memory.events")


@dataclass
class ChildOutcome:
    status: str  # complete | failed | bad-input | deadline | killed | interrupted
    reason: str
    returncode: int | None
    elapsed_s: float
    log: str
    log_tail: list[str] = field(default_factory=list)
    gpu_memory: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunningChild:
    """A started child: its process, the thread teeing its output, and what run_child needs to judge its end."""

    process: subprocess.Popen
    reader: threading.Thread
    log: Any
    log_path: Path
    tail: deque
    started: float
    gpu_before: list[float] | None
    oom_before: int

    def poll(self) -> int | None:
        return self.process.poll()


def start_child(
    argv: list[str], log_path: Path, echo: Callable[[str], None] | None = None, env: dict[str, str] | None = None
) -> RunningChild:
    """Start argv in its own session, its output teed to the log (and the console); returns at once."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    gpu_before, oom_before = gpu_memory_used_mib(), oom_kills()
    tail: deque[str] = deque(maxlen=20)
    log = log_path.open("w", encoding="utf-8")
    child = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        text=True,
        errors="replace",
        bufsize=1,
        preexec_fn=interruptible,
    )
    reader = threading.Thread(target=_tee, args=(child.stdout, log, tail, echo), daemon=True)
    reader.start()
    return RunningChild(child, reader, log, log_path, tail, time.monotonic(), gpu_before, oom_before)


def finish_child(running: RunningChild, deadline_s: float | None, check_release: bool = True) -> ChildOutcome:
    """Wait for the child to its end (or its deadline); never raises for what the child does. SIGINT to the parent
    is passed on to the child, which writes its files as interrupted; then KeyboardInterrupt goes on up."""
    child, timed_out = running.process, False
    try:
        child.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop_group(child, signal.SIGTERM, KILL_GRACE_S)
    except KeyboardInterrupt:
        _stop_group(child, signal.SIGINT, INTERRUPT_GRACE_S)
        raise
    finally:
        _kill_group(child.pid)  # what the child started and left behind (EngineCore, schedulers)
        running.reader.join(timeout=5)
        running.log.close()
    elapsed_s = time.monotonic() - running.started
    status, reason = classify(
        child.returncode, timed_out, deadline_s, oom_kills() - running.oom_before, list(running.tail)
    )
    outcome = ChildOutcome(
        status, reason, child.returncode, round(elapsed_s, 3), str(running.log_path), list(running.tail)[-8:]
    )
    outcome.gpu_memory = (
        wait_gpu_released(running.gpu_before)
        if check_release
        else {"checked": False, "why": "other engines still hold the GPU"}
    )
    return outcome


def run_child(
    argv: list[str],
    log_path: Path,
    deadline_s: float | None,
    echo: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> ChildOutcome:
    """Run argv to its end (or its deadline) in its own session; see finish_child."""
    return finish_child(start_child(argv, log_path, echo, env), deadline_s)


def interruptible() -> None:
    """A child's SIGINT back to the default (a preexec_fn): under a shell's background job SIGINT is ignored, and a
    Python started so never raises KeyboardInterrupt, so an interrupt would not write its files as interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def classify(
    returncode: int | None, timed_out: bool, deadline_s: float | None, new_oom_kills: int, tail: list[str]
) -> tuple[str, str]:
    error = next((line for line in reversed(tail) if line.startswith("error:")), None)
    if timed_out:
        return "deadline", f"still running after the {deadline_s:g} s deadline (--deadline): killed"
    if returncode == 0:
        return "complete", "exit 0"
    if returncode == 2:
        return "bad-input", error or "exit 2 (bad input)"
    if returncode == 130:
        return "interrupted", "interrupted (SIGINT); resume with --resume"
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        if new_oom_kills > 0:
            return (
                "killed",
                f"killed by {name}: out of memory (the kernel's OOM killer, {new_oom_kills} kill(s) in this cgroup)",
            )
        return "killed", f"killed by {name}" + (" (out of memory? see dmesg)" if name == "SIGKILL" else "")
    return "failed", error or f"exit {returncode}"


def _tee(stream, log, tail: deque, echo: Callable[[str], None] | None) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        tail.append(line.rstrip("\n"))
        if echo is not None:
            echo(line.rstrip("\n"))


def _stop_group(child: subprocess.Popen, sig: signal.Signals, grace_s: float) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        return
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill_group(child.pid)
        child.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def oom_kills() -> int:
    """The cgroup's OOM-kill count (cgroup v2); 0 where it cannot be read."""
    try:
        for line in OOM_EVENTS.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def gpu_memory_used_mib() -> list[float] | None:
    read, _ = nvml_reader()
    return None if read is None else [r["memory_used_mib"] for r in read()]


def wait_gpu_released(before: list[float] | None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll NVML until every GPU is back within RELEASE_TOLERANCE_MIB of its use before the child started."""
    if before is None:
        return {"checked": False, "why": "no NVIDIA GPU visible"}
    deadline = time.monotonic() + timeout_s
    while True:
        now = gpu_memory_used_mib() or before
        released = all(n <= b + RELEASE_TOLERANCE_MIB for n, b in zip(now, before))
        if released or time.monotonic() > deadline:
            return {"checked": True, "released": released, "before_mib": before, "after_mib": now}
        time.sleep(0.5)


def child_echo(prefix: str) -> Callable[[str], None]:
    def echo(line: str) -> None:
        print(f"[{prefix}] {line}", file=sys.stdout, flush=True)

    return echo
