"""`vllm bench serve` in a process started ahead of its run.

Importing vllm bench takes about 10 s of CPU. The anchor starts one process per vllm bench run before the
server, on the client's cores: each imports while the server starts (the server's own start runs on its cores),
says it is ready, and waits. Each run then gets its arguments on stdin and runs once, in a process of its own,
as `vllm bench serve` run from a shell would. The anchor waits for every process to be ready before the first
measured run, so no import overlaps a measurement.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

BENCH_PROCESS = (
    "import json, os, sys\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "ready = int(sys.argv[1])\n"
    "os.write(ready, b'ready\\n')\n"
    "os.close(ready)\n"
    "line = sys.stdin.readline()\n"
    "if not line:\n"
    "    sys.exit(0)  # the anchor ended before this run\n"
    "parser = FlexibleArgumentParser()\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(json.loads(line)))\n"
)


class BenchProcess:
    """One `vllm bench serve` run: started (importing) now, run later with `run(argv)`; output goes to `log`."""

    code = BENCH_PROCESS  # the program the process runs (tests give a fake one)

    def __init__(self, env: dict[str, str], log: Path, cpus: set[int] | None = None):
        from engines.servers import pinned

        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        with log.open("w") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.code, str(write_end)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=handle,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                preexec_fn=pinned(cpus),
            )
        os.close(write_end)
        self._ready_fd: int | None = read_end

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Block until the process has imported vllm bench; a process that died first is an error naming its log."""
        if self._ready_fd is None:
            return
        deadline, said = time.monotonic() + timeout_s, b""
        try:
            while b"\n" not in said:
                readable, _, _ = select.select([self._ready_fd], [], [], max(0.0, deadline - time.monotonic()))
                if not readable:
                    raise RuntimeError(f"vllm bench serve did not import within {timeout_s:.0f} s; see {self.log}")
                chunk = os.read(self._ready_fd, 64)
                if not chunk:
                    code = self.proc.wait()
                    raise RuntimeError(f"vllm bench serve exited with {code} before its run; see {self.log}")
                said += chunk
        finally:
            os.close(self._ready_fd)
            self._ready_fd = None

    def run(self, argv: list[str]) -> None:
        """Run vllm bench serve with `argv` (its flags) and wait for it to exit; nonzero is an error."""
        self.wait_ready()
        self.proc.stdin.write((json.dumps(argv) + "\n").encode())
        self.proc.stdin.close()
        code = self.proc.wait()
        if code != 0:
            raise RuntimeError(f"vllm bench serve exited with {code}; see {self.log}")

    def close(self) -> None:
        """A process never run exits on its closed stdin; one that does not is killed. The ready pipe closes last:
        closed first, a process still importing would fail writing to it."""
        if self.proc.poll() is None:
            if not self.proc.stdin.closed:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None
