"""Every process a campaign step started, found by a mark in its environment, so none outlives its step.

A step's process group is not enough: an isolated point (compare/run/points/isolate.py) and an engine's HTTP server
(engines/servers.py) start their own sessions, and an SGLang child left behind held ~130 GiB of the GPU while
the next step started. Each step runs with ENGINEBENCH_STEP=<name> in its environment; every descendant
inherits it (fork, spawn, subprocess, setsid alike), so after the step `kill_marked` finds them in /proc
whoever their parent is by then.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

MARK = "ENGINEBENCH_STEP"
PROC = Path("/proc")


def marked(name: str, mark: str = MARK, proc: Path = PROC) -> list[int]:
    """Pids whose environment carries mark=name (this process excluded)."""
    needle = f"{mark}={name}".encode()
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return sorted(pids)


def kill_marked(name: str, sig: int = signal.SIGKILL, mark: str = MARK) -> list[int]:
    """Signal every process of the step (or whatever `mark` names); returns the pids signalled."""
    signalled = []
    for pid in marked(name, mark):
        try:
            os.kill(pid, sig)
            signalled.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return signalled
