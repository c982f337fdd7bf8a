"""A FAKE lent GPU machine for rehearsing a lease on CPU: no GPU, but every documented limit of the device tool
enforced as strictly as the real one (a fake more generous than the real tool hides the crash).

Per call: a fresh copy of the working tree as the tool sends it (tracked files and untracked ones git does not
ignore) plus the carried paths, 64 MiB in all, or the call is refused; at most 8 carried paths; a command runs at
most 600 s and is killed at its timeout; processes it leaves in its own session die when it returns, those that
started a session (setsid) live on until the machine goes back. Back from $OUT: at most 8 files, 16 MiB each,
64 MiB in all, no deeper than $OUT/a/b/file, plain names; anything else is listed in files_left_out and not
returned. The machine goes back after 30 s idle (on the rehearsal's clock), taking its /tmp and its processes.
Lease seconds are simulated: machine start, transfer at `transfer_mib_s`, each command's own wall time, and the
idle gaps the rehearsal declares.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools.gpu.calls import LIMITS, DeviceLimits, tree_files
from tools.gpu.outbox import NAME
from tools.gpu.proctree import kill_marked

MACHINE_MARK = "FAKE_DEVICE_MACHINE"


class FakeDevice:
    def __init__(
        self,
        repo: Path,
        root: Path,
        limits: DeviceLimits = LIMITS,
        machine_start_s: float = 40.0,
        transfer_mib_s: float = 20.0,
    ) -> None:
        self.repo, self.root, self.limits = repo, root, limits
        self.machine_start_s, self.transfer_mib_s = machine_start_s, transfer_mib_s
        self.lease_used_s = 0.0
        self.idle_s: float | None = None  # None: no machine held
        self.machine_id = 0
        self.calls: list[dict[str, Any]] = []

    @property
    def machine(self) -> Path:
        return self.root / f"machine-{self.machine_id}"

    def budget_left_s(self) -> float:
        return self.limits.lease_s - self.lease_used_s

    def idle(self, seconds: float) -> None:
        """The operator's gap between a reply and the next call: counts against the lease; past 30 s the machine goes
        back."""
        if self.idle_s is None:
            return
        held = min(seconds, self.limits.idle_release_s)
        self.lease_used_s += held
        self.idle_s += seconds
        if self.idle_s > self.limits.idle_release_s:
            self.give_back()

    def give_back(self) -> None:
        if self.idle_s is None:
            return
        kill_marked(str(self.machine_id), mark=MACHINE_MARK)
        shutil.rmtree(self.machine, ignore_errors=True)
        self.idle_s = None

    def run(self, command: str, carry: tuple[str, ...] = (), timeout_s: int = 600) -> dict[str, Any]:
        refused = self._refusal(command, carry, timeout_s)
        if refused:
            self.calls.append({"refused": refused, "command": command})
            return {"error": refused}
        files = self._files(carry)
        sent_bytes = sum((self.repo / f).stat().st_size for f in files)
        if sent_bytes > self.limits.call_bytes:
            refused = (
                f"the working tree is larger than 64 MiB ({sent_bytes / 2**20:.1f} MiB: tracked and "
                "untracked-not-ignored files and carried paths)"
            )
            self.calls.append({"refused": refused, "command": command})
            return {"error": refused}
        if self.idle_s is None:  # a cold call starts a fresh, bare machine
            if self.budget_left_s() < self.limits.min_start_left_s:
                return {"error": "too little device-machine time is left to start another machine"}
            self.machine_id += 1
            self.machine.mkdir(parents=True)
            self.lease_used_s += self.machine_start_s
        work = self._copy(files)
        out = self.machine / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        rc, wall_s, tail = self._execute(command, work, out, timeout_s)
        back, left_out, back_bytes = self._collect(out)
        self.lease_used_s += wall_s + (sent_bytes + back_bytes) / (self.transfer_mib_s * 2**20)
        self.idle_s = 0.0
        record = {
            "rc": rc,
            "timed_out": rc in (124, 137),
            "wall_s": round(wall_s, 2),
            "sent_bytes": sent_bytes,
            "files": [str(p) for p in back],
            "files_at": str(self.root / f"back-{len(self.calls) + 1}"),
            "files_left_out": left_out,
            "output_tail": tail,
            "lease": {"budget_left_s": round(self.budget_left_s(), 1), "warm": True},
        }
        self.calls.append(
            {"command": command, "carry": list(carry), **{k: v for k, v in record.items() if k != "output_tail"}}
        )
        return record

    def _refusal(self, command: str, carry: tuple[str, ...], timeout_s: int) -> str | None:
        if len(command) > 2000 or not 1 <= timeout_s <= self.limits.call_s or len(carry) > self.limits.carry_paths:
            return (
                "device.run needs {command: a shell command of at most 2000 characters, timeout_s?: 1..600, "
                "carry?: at most 8 paths}"
            )
        if self.budget_left_s() <= 0:
            return "this session's device-machine time is used up"
        return None

    def _files(self, carry: tuple[str, ...]) -> set[Path]:
        files = {path.relative_to(self.repo) for path in tree_files(self.repo)}
        for name in carry:
            path = self.repo / name
            if path.exists():
                files |= {
                    p.relative_to(self.repo) for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()
                }
        return files

    def _copy(self, files: set[Path]) -> Path:
        work = self.machine / "repo"  # a fresh copy per call
        shutil.rmtree(work, ignore_errors=True)
        for relative in files:
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.repo / relative, work / relative)
        return work

    def _execute(self, command: str, work: Path, out: Path, timeout_s: int) -> tuple[int, float, str]:
        # the image's python3 has the harness's dependencies: here, the interpreter running the rehearsal
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        env = {
            **os.environ,
            "OUT": str(out),
            "ENGINEBENCH_GPU_HOME": str(self.machine / "tmp" / "enginebench-gpu"),
            MACHINE_MARK: str(self.machine_id),
            "PATH": path,
        }
        env.pop("PYTHONPATH", None)
        started = time.monotonic()
        log = self.machine / "command.log"  # a file, not a pipe: a process left running must not hold the call open
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                rc = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                rc = 124
        try:  # what the command left in its own session dies with the call; a setsid'ed process lives on
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return rc, time.monotonic() - started, log.read_bytes().decode(errors="replace")[-12_000:]

    def _collect(self, out: Path) -> tuple[list[Path], list[str], int]:
        """The files the tool would return (copied out of the machine), and the rest with why."""
        back_root = self.root / f"back-{len(self.calls) + 1}"
        back, left_out, total = [], [], 0
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            relative = path.relative_to(out)
            size = path.stat().st_size
            why = None
            if len(relative.parts) - 1 > self.limits.out_depth:
                why = "a folder too deep"
            elif not all(NAME.match(part) for part in relative.parts):
                why = "a name with odd characters"
            elif size > self.limits.out_file_bytes:
                why = "over the limits on what comes back"
            elif len(back) >= self.limits.out_files or total + size > self.limits.out_total_bytes:
                why = "over the limits on what comes back"
            if why:
                left_out.append(f"{relative} ({why})")
                continue
            (back_root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, back_root / relative)
            back.append(back_root / relative)
            total += size
        return back, left_out, total
