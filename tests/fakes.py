"""Fake engines for unit tests of the harness's own logic. They are fakes, not engines."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

from engines.base import Capabilities, Chunk, EngineDescription, Request


class FakeEngine:
    """Emits `max_output_tokens` tokens, one per `delay_s`; records what the runner asked of it."""

    def __init__(self, model=None, engine_args=None, delay_s: float = 0.001, fail_on: str | None = None,
                 hang_on: str | None = None, reset_error: str | None = None):  # fmt: skip
        self.delay_s, self.fail_on, self.hang_on, self.reset_error = delay_s, fail_on, hang_on, reset_error
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[str] = []
        self.closed_streams = 0

    async def start(self):
        self.calls.append("start")

    async def stop(self):
        self.calls.append("stop")

    async def reset_cache(self):
        self.calls.append("reset")
        if self.reset_error:
            raise RuntimeError(self.reset_error)

    def describe(self):
        caps = Capabilities(continuous_batching=True, prefix_cache=False, engine_timestamps=False, ignore_eos=True)
        return EngineDescription("fake", "0", {}, {"id": "fake"}, caps)

    async def generate(self, request: Request):
        self.calls.append(request.request_id)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for index in range(request.max_output_tokens):
                await asyncio.sleep(3600 if request.request_id == self.hang_on else self.delay_s)
                if request.request_id == self.fail_on and index == 1:
                    raise RuntimeError("engine fell over")
                yield Chunk(1, token_ids=[7])
            yield Chunk(0, finish_reason="length", num_prompt_tokens=request.num_prompt_tokens, num_cached_tokens=0)
        finally:
            self.in_flight -= 1
            self.closed_streams += 1


class BrokenStartEngine(FakeEngine):
    """A fake whose start() fails, as a real engine does when it cannot load."""

    async def start(self):
        raise RuntimeError("cannot load weights")


class FakeBatchEngine(FakeEngine):
    """A fake offline-batch engine: answers a whole list of requests at once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    async def generate_batch(self, requests):
        self.batches.append(len(requests))
        await asyncio.sleep(self.delay_s)
        return [{"num_output_tokens": r.max_output_tokens, "finish_reason": "length", "num_prompt_tokens": r.num_prompt_tokens,
                 "num_cached_tokens": 0, "engine_metrics": None} for r in requests]  # fmt: skip


def fake_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> Path:
    """A FAKE wheel: real zip layout (package files, .data/purelib, dist-info with METADATA)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as archive:
        for relative, data in files.items():
            archive.writestr(relative, data)
        archive.writestr(f"{dist}.dist-info/METADATA", metadata)
        archive.writestr(f"{dist}.dist-info/RECORD", "")
        archive.writestr(f"{dist}.data/scripts/{name}-cli", b"#!/bin/sh\n")
    return path
