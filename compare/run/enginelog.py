"""Engine output into a file beside the results; the harness's own lines stay on the terminal.

While engines run, file descriptors 1 and 2 and `sys.stdout`/`sys.stderr` all point at the log, so whatever an
engine prints reaches it however it prints: Python logging handlers made at any time, warnings, C and C++ code,
and the processes it starts (vLLM's EngineCore, SGLang's scheduler inherit the descriptors). The harness writes
through `harness_out()`/`harness_err()`, which are the terminal while a log is open. `--verbose` opens none.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TextIO

_terminal: tuple[TextIO, TextIO] | None = None  # (out, err) while a log is open


def harness_out() -> TextIO:
    return _terminal[0] if _terminal else sys.stdout


def harness_err() -> TextIO:
    return _terminal[1] if _terminal else sys.stderr


def engine_log_path(out_dir: Path, engines: tuple[str, ...]) -> Path:
    names = "+".join(name.replace("/", "_").replace(":", "_") for name in engines)
    return out_dir / "logs" / f"{names}-engine.log"


class EngineLog:
    """`with EngineLog(path):` sends engine output to `path` (appended, one header per run); `path` None: live.
    Until `keep()` (called once every input is checked) it goes to a temporary file: bad input leaves no folder."""

    def __init__(self, path: Path | None):
        self.path = path
        self._saved: tuple[int, int, TextIO, TextIO] | None = None
        self._pending: IO[bytes] | None = None

    def __enter__(self) -> EngineLog:
        global _terminal
        if self.path is None or _terminal is not None:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        saved_fds = (os.dup(1), os.dup(2))
        out, err = (
            _terminal_stream(stream, fd) for stream, fd in ((sys.stdout, saved_fds[0]), (sys.stderr, saved_fds[1]))
        )
        self._pending = tempfile.TemporaryFile()
        self._point_at(self._pending.fileno())
        self._saved = (*saved_fds, sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = io.TextIOWrapper(
            io.FileIO(1, "wb", closefd=False),
            encoding="utf-8",
            errors="replace",
            line_buffering=True,
            write_through=True,
        )
        _terminal = (out, err)
        return self

    def keep(self) -> Path | None:
        """From now on into `path`, after what engines wrote so far and a header; returns `path` (None: live)."""
        if self._pending is None:
            return None if self._saved is None else self.path
        sys.stdout.flush()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(log_fd, f"== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(sys.argv)}\n".encode())
        self._pending.seek(0)
        while block := self._pending.read(1 << 16):
            os.write(log_fd, block)
        self._point_at(log_fd)
        os.close(log_fd)
        self._pending.close()
        self._pending = None
        return self.path

    def __exit__(self, *exc_info) -> None:
        global _terminal
        if self._saved is None:
            return
        out_fd, err_fd, stdout, stderr = self._saved
        sys.stdout.flush()
        log_stream = sys.stdout
        sys.stdout, sys.stderr = stdout, stderr
        log_stream.close()
        for stream, given in zip(_terminal or (), (stdout, stderr)):
            stream.flush()
            if stream is not given:  # ours, on a copy of the terminal's descriptor
                stream.close()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        if self._pending is not None:  # never kept: bad input; what the engines wrote is dropped with it
            self._pending.close()
        _terminal, self._saved, self._pending = None, None, None

    @staticmethod
    def _point_at(fd: int) -> None:
        os.dup2(fd, 1)
        os.dup2(fd, 2)


def _terminal_stream(stream: TextIO, saved_fd: int) -> TextIO:
    """The stream the harness writes to: a stream on the terminal's descriptor where `stream` writes to fd 1 or 2,
    else `stream` itself (a test's capture, which the descriptors' redirection does not reach)."""
    try:
        writes_to_fd = stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):
        writes_to_fd = False
    if not writes_to_fd:
        return stream
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return io.TextIOWrapper(
        os.fdopen(os.dup(saved_fd), "wb", buffering=0),
        encoding=encoding,
        errors="replace",
        line_buffering=True,
        write_through=True,
    )


class HarnessStream(io.TextIOBase):
    """The harness's output stream as a file that can be given once (a rich Console's): whichever stream
    `harness_out()` is at each write."""

    def write(self, text: str) -> int:
        return harness_out().write(text)

    def flush(self) -> None:
        harness_out().flush()

    def isatty(self) -> bool:
        return harness_out().isatty()

    def fileno(self) -> int:
        return harness_out().fileno()
