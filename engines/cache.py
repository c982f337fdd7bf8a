"""The cache folder (synthetic models, GGUF exports, LoRA adapters, the GGUF converter, engines' field lists), and
one builder at a time for each thing in it, across processes: two runs that share a cache (two benchmarks started
at once, the test workers) build each thing once. The fast path (already built) takes no lock; a builder takes it,
checks again, builds."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("ENGINEBENCH_CACHE", Path.home() / ".cache" / "enginebench"))


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Held while `target` is built: an flock on a file beside it (`.NAME.lock`), released by the OS if the builder
    dies. A process waiting here finds the target built when it gets the lock, and must check before building."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_text_atomic(path: Path, text: str) -> None:
    """Whole or absent: readers of the cache take no lock, so a file is written aside and renamed into place."""
    written = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        written.write_text(text)
        os.replace(written, path)
    finally:
        written.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
