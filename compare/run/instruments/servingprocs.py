"""The processes that serve a run, found from the process tree under the harness and named by role.

Roles come from phases.json ("roles": [role, pattern] on the command line, which vLLM and SGLang set to
their process titles) and from an engine's own `host_anatomy["roles"]`. Only Python processes are
sampled; the harness is always one. A Python child that no pattern names is listed, not sampled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from compare.analysis.phases import table

PROC = Path("/proc")


@dataclass(frozen=True)
class ServingProcess:
    pid: int
    role: str
    cmdline: str

    @property
    def label(self) -> str:
        return f"{self.role}-{self.pid}"


def _ppid(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """Every process under `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], list(sorted(children.get(root, [])))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return found


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def is_python(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(PROC / str(pid) / "exe")).startswith("python")
    except OSError:
        return False


def role_of(command: str, roles: list[list[str]]) -> str | None:
    return next((role for role, pattern in roles if fnmatchcase(command, pattern)), None)


def serving_processes(
    harness_pid: int, extra_roles: list[list[str]] | tuple = ()
) -> tuple[list[ServingProcess], list[str]]:
    """(the processes to sample, harness first; the Python children left out, as command lines)."""
    roles = [*extra_roles, *table()["roles"]]
    serving, left_out = [ServingProcess(harness_pid, "harness", cmdline(harness_pid))], []
    for pid in descendants(harness_pid):
        if not is_python(pid):
            continue
        command = cmdline(pid)
        role = role_of(command, roles)
        if role is None:
            left_out.append(command[:200])
        else:
            serving.append(ServingProcess(pid, role, command[:300]))
    return serving, left_out


def cpu_seconds(pid: int, tid: int | None = None) -> float | None:
    """utime + stime of a process (or one of its threads), from /proc (clock ticks)."""
    stat = PROC / str(pid) / ("stat" if tid is None else f"task/{tid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per thread id (the ids py-spy names its threads by)."""
    try:
        tids = [int(entry.name) for entry in (PROC / str(pid) / "task").iterdir()]
    except OSError:
        return {}
    found = {tid: cpu_seconds(pid, tid) for tid in tids}
    return {tid: seconds for tid, seconds in found.items() if seconds is not None}
