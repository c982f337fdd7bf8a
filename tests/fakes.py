"""Fakes for unit tests of the harness's own logic: fake engines, hand-made records, fake wheels. They are
fakes, not engines."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

from compare.results.records import RequestRecord
from engines.base import (
    BatchEngine,
    BatchOutput,
    Capabilities,
    Chunk,
    EngineDescription,
    Request,
    StreamingEngine,
    require_local_model,
)

MS = 1_000_000


class FakeEngine(StreamingEngine):
    """Emits `max_output_tokens` tokens, one per `delay_s`; records what the runner asked of it."""

    def __init__(
        self,
        model=None,
        engine_args=None,
        delay_s: float = 0.001,
        fail_on: str | None = None,
        hang_on: str | None = None,
        reset_error: str | None = None,
    ):
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


class FakeBatchEngine(BatchEngine):
    """A fake offline-batch engine: answers a whole list of requests at once."""

    def __init__(self, model=None, engine_args=None, delay_s: float = 0.001):
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.calls: list[str] = []

    async def start(self):
        self.calls.append("start")

    async def stop(self):
        self.calls.append("stop")

    async def reset_cache(self):
        self.calls.append("reset")

    def describe(self):
        caps = Capabilities(
            continuous_batching=True, prefix_cache=False, engine_timestamps=False, ignore_eos=True, offline_batch=True
        )
        return EngineDescription("fake-batch", "0", {}, {"id": "fake"}, caps)

    async def generate_batch(self, requests):
        self.batches.append(len(requests))
        await asyncio.sleep(self.delay_s)
        return [BatchOutput(r.max_output_tokens, "length", r.num_prompt_tokens, 0) for r in requests]


def record(token_ms, chunk_tokens=None, sent_ms=0.0, end_ms=None, ok=True, prompt_tokens=10, **fields) -> RequestRecord:
    """A hand-made record: `token_ms` gives one receipt time per token (ms after send); the tokens of one
    chunk share their chunk's time, as `chunk_tokens` groups them (default: one token per chunk)."""
    chunk_tokens = chunk_tokens or [1] * len(token_ms)
    starts = [sum(chunk_tokens[:i]) for i in range(len(chunk_tokens))]
    return RequestRecord(
        id=fields.pop("id", "r"),
        prompt_tokens=prompt_tokens,
        target_output_tokens=fields.pop("target_output_tokens", len(token_ms)),
        sent_ns=int(sent_ms * MS),
        end_ns=int((end_ms if end_ms is not None else token_ms[-1]) * MS),
        chunk_ns=[int(token_ms[i] * MS) for i in starts],
        chunk_tokens=list(chunk_tokens),
        output_tokens=len(token_ms),
        error=None if ok else "boom",
        finish_reason=fields.pop("finish_reason", "length"),
        **fields,
    )


def fake_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> Path:
    """A FAKE wheel: real zip layout (package files, .data/purelib, dist-info with METADATA)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as archive:
        for relative, data in files.items():
            archive.writestr(relative, data)
        archive.writestr(f"{dist}.dist-info/METADATA", metadata)
        archive.writestr(f"{dist}.dist-info/RECORD", "")
        archive.writestr(f"{dist}.data/scripts/{name}-cli", b"#!/bin/sh\n")
    return path


class NeedsWeightsEngine(FakeEngine):
    """A fake that, like the hf and llamacpp engines, refuses a model without weights when constructed."""

    def __init__(self, model=None, engine_args=None):
        super().__init__(model, engine_args)
        require_local_model("tests.fakes:NeedsWeightsEngine", model, needs_weights=True)


class NotAnEngine:
    """A class that is no engine: it has neither generate() nor generate_batch()."""

    def __init__(self, model=None, engine_args=None):
        pass


def fake_run(
    engine: str,
    scenario: str,
    cells: list[tuple[dict, list[RequestRecord]]],
    kind: str = "inprocess",
    hardware: str = "NVIDIA H100 80GB HBM3",
    dtype: str = "bfloat16",
    quick: bool = False,
):
    """A FAKE stored run: a results document with the given cells (config, records), summaries derived as the
    harness derives them, on the named GPU (or `hardware=None`: a CPU)."""
    from compare.analysis.summaries import summarize_cell
    from compare.results.store import StoredRun

    gpus = {"available": True, "devices": [{"name": hardware}]} if hardware else {"available": False}
    doc = {
        "metadata": {
            "gpus": gpus,
            "cpu": {"model": "fake CPU", "affinity_cores": 2},
            "date_utc": "2026-01-01T00:00:00",
        },
        "engine": {"name": engine, "model": {"dtype": dtype, "quantization": None}, "capabilities": {}},
        "model": {"spec": "synthetic:llama-3.1-8b", "kind": "synthetic", "preset": "llama-3.1-8b"},
        "scenario": {"name": scenario, "seed": 0},
        "quick": quick,
        "variant": {"of": engine, "kind": kind, "engine_args": {}},
        "cells": [],
    }
    for config, records in cells:
        config = {
            "prompt_mode": "distinct",
            "output_tokens": len(records[0].chunk_ns),
            "prompt_tokens": records[0].prompt_tokens,
            **config,
        }
        cell = {
            "cell_id": config["cell_id"],
            "config": config,
            "requests": records,
            "warmups": [],
            "cache_resets": [],
            "gpu": {},
        }
        cell.update(summarize_cell(records, config, {}, []))
        doc["cells"].append(cell)
    return StoredRun(Path(f"/fake/{engine}_{scenario}.json"), doc)


def steady_records(
    n: int,
    ttft_ms: float,
    itl_ms: float,
    tokens: int = 16,
    jitter: float = 0.05,
    seed: int = 0,
    prompt_tokens: int = 128,
    concurrency: int = 1,
    **fields,
) -> list[RequestRecord]:
    """n FAKE records: TTFT and every gap drawn around the given means (relative jitter), sent back to back
    by `concurrency` workers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        first = ttft_ms * (1 + jitter * rng.standard_normal())
        gaps = itl_ms * (1 + jitter * rng.standard_normal(tokens - 1))
        token_ms = list(np.concatenate(([first], first + np.cumsum(gaps))))
        sent = (i // concurrency) * (token_ms[-1] + 1)
        records.append(record(token_ms, sent_ms=sent, prompt_tokens=prompt_tokens, id=f"r{i}", **fields))
    return records
