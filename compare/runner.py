"""The runner: closed-loop concurrency, one receipt timestamp per chunk, raw records per request.

Per cell: warmups at concurrency 1 (stored apart), a cache reset, then N workers that each send
their next request when the last one finishes. The per-token hot path is a clock read and two
appends; everything else is derived after the request ends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable

import numpy as np

from engines.base import Chunk, Engine, Request
from workloads.plan import CellPlan


@dataclass
class CellRun:
    """Filled while the cell runs, so an interrupt can still save what was measured."""

    plan: CellPlan
    warmups: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any] | None] = field(default_factory=list)
    cache_resets: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def finished_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r is not None]


async def run_cell(
    engine: Engine,
    cell: CellRun,
    timeout_s: float,
    decode: Callable[[list[int]], str] | None = None,
    on_request_done: Callable[[], None] | None = None,
) -> None:
    plan = cell.plan
    batch = getattr(engine, "generate_batch", None)
    await _reset(engine, cell, "before warmups")
    if batch is not None:  # offline batch engines take the whole cell at once
        cell.warmups.extend(await run_batch(engine, plan.warmups, timeout_s) if plan.warmups else [])
    else:
        cell.warmups.extend(await closed_loop(engine, plan.warmups, 1, timeout_s, decode))
    await _reset(engine, cell, "after warmups")
    if batch is not None:
        cell.records = await run_batch(engine, plan.requests, timeout_s)
    else:
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
    engine: Engine,
    requests: tuple[Request, ...],
    concurrency: int,
    timeout_s: float,
    decode: Callable[[list[int]], str] | None = None,
    results: list[dict[str, Any] | None] | None = None,
    on_request_done: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
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
    engine: Engine,
    request: Request,
    timeout_s: float,
    origin_ns: int,
    decode: Callable[[list[int]], str] | None = None,
) -> dict[str, Any]:
    chunk_ns: list[int] = []
    chunk_tokens: list[int] = []
    output_ids: list[int] = []
    meta_chunks: list[Chunk] = []
    error = None
    sent_ns = perf_counter_ns()
    stream = engine.generate(request)
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in stream:
                now = perf_counter_ns()
                if chunk.num_new_tokens:
                    chunk_ns.append(now)
                    chunk_tokens.append(chunk.num_new_tokens)
                    if chunk.token_ids:
                        output_ids.extend(chunk.token_ids)
                if chunk.finish_reason is not None or chunk.engine_metrics is not None or chunk.num_cached_tokens is not None:
                    meta_chunks.append(chunk)
    except TimeoutError:
        error = f"timeout: no end of stream within {timeout_s:g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await stream.aclose()
    end_ns = perf_counter_ns()
    return _streamed_record(
        request, sent_ns - origin_ns, sent_ns, end_ns, chunk_ns, chunk_tokens, output_ids, meta_chunks, error, decode
    )


async def run_batch(engine: Engine, requests: tuple[Request, ...], timeout_s: float) -> list[dict[str, Any]]:
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
    end_ns = perf_counter_ns()
    records = []
    for index, request in enumerate(requests):
        out = outputs[index] if index < len(outputs) else None
        record = _record(request, 0, end_ns - sent_ns, error or (None if out else "engine returned no output"))
        if out:
            record.update(
                output_tokens=out["num_output_tokens"],
                finish_reason=out.get("finish_reason"),
                prompt_tokens_reported=out.get("num_prompt_tokens"),
                cached_tokens=out.get("num_cached_tokens"),
                engine=_engine_side(out.get("engine_metrics"), sent_ns, []),
            )
        record["timing"] = "batch"
        records.append(record)
    return records


def _streamed_record(
    request: Request,
    sent_offset_ns: int,
    sent_ns: int,
    end_ns: int,
    chunk_ns: list[int],
    chunk_tokens: list[int],
    output_ids: list[int],
    meta_chunks: list[Chunk],
    error: str | None,
    decode: Callable[[list[int]], str] | None,
) -> dict[str, Any]:
    token_ns = np.repeat(np.asarray(chunk_ns, dtype=np.int64) - sent_ns, chunk_tokens).tolist()
    meta: dict[str, Any] = {}
    for chunk in meta_chunks:  # later chunks win
        for name in ("finish_reason", "num_prompt_tokens", "num_cached_tokens", "engine_metrics"):
            value = getattr(chunk, name)
            if value is not None:
                meta[name] = value
    output_text = decode(output_ids) if decode and output_ids else None
    record = _record(request, sent_offset_ns, end_ns - sent_ns, error)
    record.update(
        finish_reason=meta.get("finish_reason"),
        prompt_tokens_reported=meta.get("num_prompt_tokens"),
        output_tokens=len(token_ns),
        output_chars=len(output_text) if output_text is not None else None,
        cached_tokens=meta.get("num_cached_tokens"),
        token_ns=token_ns,
        chunk_tokens=chunk_tokens,
        engine=_engine_side(meta.get("engine_metrics"), sent_ns, token_ns),
    )
    return record


def _record(request: Request, sent_offset_ns: int, duration_ns: int, error: str | None) -> dict[str, Any]:
    """Every record has the same keys; streamed and batch records fill in what they observed."""
    return {
        "id": request.request_id,
        "ok": error is None,
        "error": error,
        "finish_reason": None,
        "prompt_tokens": request.num_prompt_tokens,
        "prompt_tokens_reported": None,
        "prompt_chars": len(request.prompt_text) if request.prompt_text is not None else None,
        "target_output_tokens": request.max_output_tokens,
        "output_tokens": 0,
        "output_chars": None,
        "cached_tokens": None,
        "sent_ns": sent_offset_ns,
        "end_ns": duration_ns,
        "token_ns": [],
        "chunk_tokens": [],
        "engine": None,
    }


def _engine_side(metrics: dict[str, Any] | None, sent_ns: int, token_ns: list[int]) -> dict[str, Any] | None:
    """Engine timestamps on the harness's clock become offsets from send, with a first-token
    delivery lag; stamps on another clock are kept as given, and a disagreement is flagged."""
    if not metrics:
        return None
    engine = {k: v for k, v in metrics.items() if k != "timestamps_ns"}
    stamps = metrics.get("timestamps_ns") or {}
    if not stamps:
        return engine
    if not SAME_CLOCK.get(metrics.get("clock"), False):
        engine["timestamps_ns"], engine["clock_aligned"] = stamps, False
        return engine
    offsets = {name: value - sent_ns for name, value in stamps.items() if value is not None}
    engine["timestamps_ns"], engine["clock_aligned"] = offsets, True
    first = offsets.get("first_token")
    consistent = all(value >= 0 for value in offsets.values())
    if first is not None and token_ns:
        engine["delivery_lag_ns"] = token_ns[0] - first
        consistent = consistent and token_ns[0] >= first
    engine["clock_consistent"] = consistent
    return engine


# clocks an engine may name; "monotonic" counts only where it is perf_counter's clock (Linux: both
# are CLOCK_MONOTONIC), which holds across processes on one machine
SAME_CLOCK = {
    "perf_counter": True,
    "monotonic": time.get_clock_info("monotonic").implementation == time.get_clock_info("perf_counter").implementation,
}
