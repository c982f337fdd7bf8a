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
import dataclasses
from dataclasses import dataclass, field
from time import perf_counter_ns
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Callable

from compare.results.records import RequestRecord
from compare.run.openloop import open_loop
from compare.run.send import Decode, run_batch, run_request
from compare.run.stopping import CellStop
from engines.base import BatchEngine, Engine, Request, StreamingEngine
from workloads.cellplan import CellPlan

RESET_TIMEOUT_S = 120.0


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
    stop: dict[str, Any] | None = None  # --until-ci, --end-saturated: what ended the cell (compare/run/stopping.py)

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
    stop = None
    if plan.spec.early_stop is not None and measured is None and not plan.conversations:
        last_arrival_ns = max(plan.arrivals_ns) if plan.arrivals_ns else None
        stop = CellStop(plan.spec.early_stop, cell.origin_ns, last_arrival_ns)
    try:
        await _send(engine, cell, timeout_s, decode, on_request_done, measured, held, stop)
    finally:
        if stop is not None:
            cell.stop = stop.outcome(len(plan.requests))


async def _send(engine, cell: CellRun, timeout_s: float, decode, on_request_done, measured, held, stop) -> None:
    plan = cell.plan
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
            stop=stop,
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
                stop,
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
    stop: CellStop | None = None,
) -> list[RequestRecord]:
    """N workers share one queue of requests; each sends its next one when its last one ends (or until `stop`
    says the cell has ended: those in flight then run to their end)."""
    results = results if results is not None else [None] * len(requests)
    pending = iter(range(len(requests)))
    origin_ns = origin_ns or perf_counter_ns()

    async def worker() -> None:
        for index in pending:  # one event loop: workers never take the same index
            if stop is not None:
                if stop.ended:
                    return
                stop.sent()
            results[index] = record = await run_request(engine, requests[index], timeout_s, origin_ns, decode)
            if stop is not None:
                stop.done(record)
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
