"""The runner: closed-loop concurrency, one receipt timestamp per chunk, raw records per request.

Per cell: warmups at concurrency 1 (stored apart), a cache reset, then N workers that each send
their next request when the last one finishes. The per-chunk hot path is a clock read and two
appends (compare/records.py: StreamRecorder); everything else is derived after the request ends.
Batch engines get the whole cell in one call instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable

from compare.records import RequestRecord, StreamRecorder, batch_records
from engines.base import BatchEngine, Engine, Request, StreamingEngine
from workloads.plan import CellPlan

Decode = Callable[[list[int]], str]


@dataclass
class CellRun:
    """Filled while the cell runs, so an interrupt can still save what was measured."""

    plan: CellPlan
    warmups: list[RequestRecord] = field(default_factory=list)
    records: list[RequestRecord | None] = field(default_factory=list)
    cache_resets: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def finished_records(self) -> list[RequestRecord]:
        return [r for r in self.records if r is not None]


async def run_cell(
    engine: Engine,
    cell: CellRun,
    timeout_s: float,
    decode: Decode | None = None,
    on_request_done: Callable[[], None] | None = None,
) -> None:
    plan = cell.plan
    await _reset(engine, cell, "before warmups")
    if isinstance(engine, BatchEngine):  # offline batch engines take the whole cell at once
        cell.warmups.extend(await run_batch(engine, plan.warmups, timeout_s) if plan.warmups else [])
        await _reset(engine, cell, "after warmups")
        cell.records = await run_batch(engine, plan.requests, timeout_s)
    else:
        cell.warmups.extend(await closed_loop(engine, plan.warmups, 1, timeout_s, decode))
        await _reset(engine, cell, "after warmups")
        cell.records = [None] * len(plan.requests)
        await closed_loop(engine, plan.requests, plan.spec.concurrency, timeout_s, decode, cell.records, on_request_done)
    cell.complete = True


async def _reset(engine: Engine, cell: CellRun, when: str) -> None:
    started = perf_counter_ns()
    try:
        await engine.reset_cache()
        cell.cache_resets.append({"when": when, "ok": True, "duration_ns": perf_counter_ns() - started})
    except Exception as exc:  # recorded, not hidden: the cell may then start with a warm cache
        cell.cache_resets.append({"when": when, "ok": False, "error": f"{type(exc).__name__}: {exc}"})


async def closed_loop(
    engine: StreamingEngine,
    requests: tuple[Request, ...],
    concurrency: int,
    timeout_s: float,
    decode: Decode | None = None,
    results: list[RequestRecord | None] | None = None,
    on_request_done: Callable[[], None] | None = None,
) -> list[RequestRecord]:
    """N workers share one queue of requests; each sends its next one when its last one ends."""
    results = results if results is not None else [None] * len(requests)
    pending = iter(range(len(requests)))
    origin_ns = perf_counter_ns()

    async def worker() -> None:
        for index in pending:  # one event loop: workers never take the same index
            results[index] = await run_request(engine, requests[index], timeout_s, origin_ns, decode)
            if on_request_done is not None:
                on_request_done()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return results  # type: ignore[return-value]


async def run_request(
    engine: StreamingEngine, request: Request, timeout_s: float, origin_ns: int, decode: Decode | None = None
) -> RequestRecord:
    recorder = StreamRecorder(request, origin_ns)
    error = None
    stream = engine.generate(request)
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                recorder.on_chunk(chunk)
    except TimeoutError:
        error = f"timeout: no end of stream within {timeout_s:g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await stream.aclose()
    return recorder.finish(error, decode)


async def run_batch(engine: BatchEngine, requests: tuple[Request, ...], timeout_s: float) -> list[RequestRecord]:
    """One call for all requests: each record gets the batch's send and end, and no token times."""
    error, outputs = None, []
    sent_ns = perf_counter_ns()
    try:
        async with asyncio.timeout(timeout_s * max(1, len(requests))):
            outputs = await engine.generate_batch(requests)
    except TimeoutError:
        error = f"timeout: batch did not finish within {timeout_s * len(requests):g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return batch_records(requests, outputs, sent_ns, perf_counter_ns(), error)
