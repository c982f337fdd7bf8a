"""The runner: closed-loop concurrency or open-loop arrivals, one receipt timestamp per chunk, raw
records per request.

Per cell: warmups at concurrency 1 (stored apart), a cache reset, then either N workers that each send
their next request when the last one finishes (closed loop), or every request sent at its scheduled
time whatever is still in flight (open loop; `max_concurrency` may cap it, and then a request waits in
the harness, and that wait counts, since latency is measured from the schedule). The per-chunk hot path is a
clock read and two appends (compare/results/records.py: StreamRecorder); everything else is derived after the
request ends. Batch engines get the whole cell in one call instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from time import perf_counter_ns
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Callable

from compare.results.recorder import StreamRecorder, batch_records
from compare.results.records import RequestRecord
from compare.run.instruments.nvtx_marks import REQUEST_MARKS
from engines.base import BatchEngine, Engine, Request, StreamingEngine
from workloads.cellplan import CellPlan

RESET_TIMEOUT_S = 120.0

Decode = Callable[[list[int]], str]


@dataclass
class CellRun:
    """Filled while the cell runs, so an interrupt can still save what was measured."""

    plan: CellPlan
    warmups: list[RequestRecord] = field(default_factory=list)
    records: list[RequestRecord | None] = field(default_factory=list)
    cache_resets: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    origin_ns: int | None = (
        None  # perf_counter_ns at the start of the measured requests: records' offsets count from it
    )
    client_workers: list[dict[str, Any]] | None = None  # --client-procs / --ray: per worker, where and how busy
    admission: dict[str, Any] | None = None  # batch shapes: how the measured requests were admitted together

    def finished_records(self) -> list[RequestRecord]:
        return [r for r in self.records if r is not None]


async def run_cell(
    engine: Engine,
    cell: CellRun,
    timeout_s: float,
    decode: Decode | None = None,
    on_request_done: Callable[[], None] | None = None,
    measured: Callable[[CellPlan], Any] | None = None,
    window: Callable[[], AbstractAsyncContextManager] | None = None,
) -> None:
    """`measured`: sends the measured requests from client workers elsewhere (a ClientOutcome: origin, records).
    `window`: entered just before the first measured request and left after the last
    (compare/run/instruments/cellwindow.py:
    the host profiler, the energy meter, NVTX ranges)."""
    plan = cell.plan
    await _reset(engine, cell, "before warmups")
    if isinstance(engine, BatchEngine):  # offline batch engines take the whole cell at once
        cell.warmups.extend(await run_batch(engine, plan.warmups, timeout_s) if plan.warmups else [])
        await _reset(engine, cell, "after warmups")
        async with window() if window is not None else nullcontext():
            cell.records = await run_batch(engine, plan.requests, timeout_s)
    else:
        cell.warmups.extend(await closed_loop(engine, plan.warmups, 1, timeout_s, decode))
        await _reset(engine, cell, "after warmups")
        cell.records = [None] * plan.num_measured
        async with window() if window is not None else nullcontext():
            await _measured(engine, cell, timeout_s, decode, on_request_done, measured)
    cell.complete = True


async def _measured(engine, cell: CellRun, timeout_s: float, decode, on_request_done, measured) -> None:
    plan = cell.plan
    closed = measured is None and not plan.conversations and plan.arrivals_ns is None
    held = closed and plan.spec.admit_together and await _hold_admissions(engine, cell)  # before the clock starts
    cell.origin_ns = perf_counter_ns()
    if measured is not None:  # client workers in other processes (compare/run/clients/clientprocs.py)
        outcome = await measured(plan)
        cell.origin_ns, cell.records, cell.client_workers = outcome.origin_ns, outcome.records, outcome.workers
    elif plan.conversations:
        await conversation_loop(
            engine,
            plan.conversations,
            plan.requests[0],
            plan.spec.cell_id,
            plan.spec.concurrency,
            timeout_s,
            decode,
            cell.records,
            on_request_done,
            cell.origin_ns,
        )
    elif plan.arrivals_ns is not None:
        await open_loop(
            engine,
            plan.requests,
            plan.arrivals_ns,
            plan.spec.concurrency,
            timeout_s,
            decode,
            cell.records,
            on_request_done,
            cell.origin_ns,
        )
    else:
        release = asyncio.ensure_future(_release_admissions(engine, cell)) if held else None
        try:
            await closed_loop(
                engine,
                plan.requests,
                plan.spec.concurrency,
                timeout_s,
                decode,
                cell.records,
                on_request_done,
                cell.origin_ns,
            )
        finally:
            if release is not None and not release.done():  # the requests failed before all were queued
                release.cancel()


async def _hold_admissions(engine, cell: CellRun) -> bool:
    """Batch shapes: the engine holds the cell's requests unscheduled until all are queued, then starts them in one
    step (_release_admissions); `cell.admission` records how, and when it resumed (the first step's start)."""
    if await engine.hold_admissions():
        return True
    cell.admission = {"together": False, "why": "the engine cannot hold admissions: requests start as they arrive"}
    return False


async def _release_admissions(engine, cell: CellRun) -> None:
    num_requests = len(cell.plan.requests)
    try:
        released_ns = await engine.release_admissions(num_requests)
    except Exception as exc:  # the engine resumed anyway; the cell's steps are then not known to be in phase
        cell.admission = {"together": False, "why": f"release failed: {type(exc).__name__}: {exc}"}
        return
    # released_ns on the clock of the cell's records and step rows: after the measured requests' start
    cell.admission = {"together": True, "num_requests": num_requests, "released_ns": released_ns - cell.origin_ns}


async def _reset(engine: Engine, cell: CellRun, when: str) -> None:
    started = perf_counter_ns()
    try:
        async with asyncio.timeout(RESET_TIMEOUT_S):  # a dead engine may never answer (vLLM after EngineCore died)
            answer = await engine.reset_cache()
        cell.cache_resets.append(
            {
                "when": when,
                "ok": True,
                "duration_ns": perf_counter_ns() - started,
                **(answer if isinstance(answer, dict) else {}),
            }
        )
    except TimeoutError:
        cell.cache_resets.append(
            {"when": when, "ok": False, "error": f"timeout: no answer within {RESET_TIMEOUT_S:g} s"}
        )
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
    origin_ns: int | None = None,
) -> list[RequestRecord]:
    """N workers share one queue of requests; each sends its next one when its last one ends."""
    results = results if results is not None else [None] * len(requests)
    pending = iter(range(len(requests)))
    origin_ns = origin_ns or perf_counter_ns()

    async def worker() -> None:
        for index in pending:  # one event loop: workers never take the same index
            results[index] = await run_request(engine, requests[index], timeout_s, origin_ns, decode)
            if on_request_done is not None:
                on_request_done()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return results  # type: ignore[return-value]


async def conversation_loop(
    engine: StreamingEngine,
    conversations: tuple,
    template: Request,
    cell_id: str,
    concurrency: int,
    timeout_s: float,
    decode: Decode | None,
    results: list[RequestRecord | None],
    on_request_done: Callable[[], None] | None,
    origin_ns: int,
) -> None:
    """At most `concurrency` conversations at once, interleaved; each sends its turns in order. A turn's prompt is
    the whole history (earlier user turns and the engine's own output ids) plus its new user turn; after the
    answer comes, the conversation thinks for its planned time. A failed turn ends its conversation: the turns
    not sent are recorded as failed."""
    pending = iter(conversations)

    async def worker() -> None:
        for conversation in pending:
            history: tuple[int, ...] = ()
            turns = len(conversation.user_turns)
            for turn, user in enumerate(conversation.user_turns):
                out = conversation.output_tokens[turn]
                request = dataclasses.replace(
                    template,
                    request_id=f"{cell_id}-c{conversation.index}-t{turn}",
                    prompt_token_ids=history + user,
                    max_output_tokens=out,
                    min_output_tokens=out if template.ignore_eos else 0,
                    tags=(("conversation", conversation.index), ("turn", turn)),
                )
                record = await run_request(engine, request, timeout_s, origin_ns, decode)
                results[conversation.index * turns + turn] = record
                if on_request_done is not None:
                    on_request_done()
                if record.ok and len(record.output_ids or ()) != record.output_tokens:
                    record.error = "multi-turn needs the engine's output token ids to build the next turn; it sent none"
                if not record.ok:
                    for later in range(turn + 1, turns):
                        results[conversation.index * turns + later] = not_sent(
                            cell_id, request, conversation.index, later, turn
                        )
                    break
                output = tuple(record.output_ids)
                if output and output[-1] == conversation.closing_id:  # the next user turn closes the message itself
                    output = output[:-1]
                history = request.prompt_token_ids + output
                record.output_ids = None
                if turn + 1 < turns:
                    await asyncio.sleep(conversation.think_ns[turn] / 1e9)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(conversations)))))


def not_sent(cell_id: str, request: Request, conversation: int, turn: int, failed_turn: int) -> RequestRecord:
    return RequestRecord(
        id=f"{cell_id}-c{conversation}-t{turn}",
        prompt_tokens=0,
        target_output_tokens=request.max_output_tokens,
        error=f"not sent: turn {failed_turn} failed",
        tags={"conversation": conversation, "turn": turn},
    )


async def open_loop(
    engine: StreamingEngine,
    requests: tuple[Request, ...],
    arrivals_ns: tuple[int, ...],
    max_concurrency: int,
    timeout_s: float,
    decode: Decode | None = None,
    results: list[RequestRecord | None] | None = None,
    on_request_done: Callable[[], None] | None = None,
    origin_ns: int | None = None,
    precise: bool | None = None,
) -> list[RequestRecord]:
    """Each request goes at its due time (origin + arrival), whatever is in flight; max_concurrency > 0 caps it.
    `precise`: spin for each send (None: where the rate asks for it, `precise_sends`)."""
    results = results if results is not None else [None] * len(requests)
    origin_ns = origin_ns or perf_counter_ns()
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
    precise = precise_sends(arrivals_ns) if precise is None else precise

    async def one(index: int) -> None:
        async with slots or contextlib.nullcontext():
            results[index] = await run_request(
                engine, requests[index], timeout_s, origin_ns, decode, arrivals_ns[index]
            )
        if on_request_done is not None:
            on_request_done()

    # one dispatcher, in due order: a task per request as it falls due (a task per request from the start made 5000
    # timers, and creating them delayed the first sends by tens of ms at 1000 req/s)
    tasks = []
    for index in sorted(range(len(requests)), key=lambda i: arrivals_ns[i]):
        await sleep_until(origin_ns + arrivals_ns[index], precise)
        tasks.append(asyncio.ensure_future(one(index)))
    await asyncio.gather(*tasks)
    return results  # type: ignore[return-value]


async def run_share(
    engine: StreamingEngine, share, origin_ns: int, decode: Decode | None
) -> list[tuple[int, RequestRecord]]:
    """A client worker's part of a cell (compare/run/clients/shares.py), as (the cell's request index, record) pairs."""
    if share.kind == "conversations":
        turns = share.turns
        results: list[RequestRecord | None] = [None] * ((max(share.indices) + 1) * turns)
        await conversation_loop(
            engine,
            share.conversations,
            share.requests[0],
            share.cell_id,
            share.concurrency,
            share.timeout_s,
            decode,
            results,
            None,
            origin_ns,
        )
        return [(index, record) for index, record in enumerate(results) if record is not None]
    if share.kind == "open":
        records = await open_loop(
            engine, share.requests, share.arrivals_ns, share.concurrency, share.timeout_s, decode, origin_ns=origin_ns
        )
    else:
        records = await closed_loop(
            engine, share.requests, share.concurrency, share.timeout_s, decode, origin_ns=origin_ns
        )
    return list(zip(share.indices, records))


PRECISE_RATE = 500.0  # req/s: open-loop cells this fast wait precisely for each send (docs/load.md)
SPIN_LEAD_NS = 1_500_000  # the precise wait sleeps to this much before the due time, then yields until it


def precise_sends(arrivals_ns: tuple[int, ...] | None) -> bool:
    """Whether an open-loop cell spins for its sends: its mean rate is at least PRECISE_RATE (recorded per cell)."""
    if not arrivals_ns or len(arrivals_ns) < 2 or arrivals_ns[-1] <= 0:
        return False  # one request, or all due at once (rate inf): nothing to wait for
    return (len(arrivals_ns) - 1) / (arrivals_ns[-1] / 1e9) >= PRECISE_RATE


async def sleep_until(due_ns: int, precise: bool = False, clock=perf_counter_ns, sleep=asyncio.sleep) -> None:
    """Wait to `due_ns` (perf_counter), never returning before it. The loop's timer wakes up to about a millisecond
    late (epoll waits in whole ms). `precise`: sleep to SPIN_LEAD_NS before, then yield to the loop (sleep(0): other
    requests' chunks are still received and stamped) until the clock passes the due time; it costs CPU while it
    waits, so only fast cells use it (`precise_sends`). The lateness left is recorded per request (`send_lag_ns`)."""
    delay_ns = due_ns - clock() - (SPIN_LEAD_NS if precise else 0)
    if delay_ns > 0:
        await sleep(delay_ns / 1e9)
    while clock() < due_ns:
        await sleep(0 if precise else (due_ns - clock()) / 1e9)  # the timer can fire a hair early: never send early


async def run_request(
    engine: StreamingEngine,
    request: Request,
    timeout_s: float,
    origin_ns: int,
    decode: Decode | None = None,
    scheduled_ns: int | None = None,
) -> RequestRecord:
    recorder = StreamRecorder(request, origin_ns, scheduled_ns)
    error = None
    marks = REQUEST_MARKS.get()  # NVTX ranges inside a marked cell (compare/run/instruments/nvtx_marks.py)
    handle = marks.begin(request.request_id) if marks is not None else None
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
        if marks is not None:
            marks.end(handle)
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
