"""Open loop: every request sent at its due time whatever is still in flight, and how the dispatcher waits for it
precisely (docs/load.md)."""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter_ns
from typing import Callable

from compare.results.records import RequestRecord
from compare.run.send import Decode, run_request
from compare.run.stopping import CellStop
from engines.base import Request, StreamingEngine


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
    stop: CellStop | None = None,
) -> list[RequestRecord]:
    """Each request goes at its due time (origin + arrival), whatever is in flight; max_concurrency > 0 caps it.
    `precise`: spin for each send (None: where the rate asks for it, `precise_sends`). `stop`: no more sends once it
    says the cell has ended; on saturation what is in flight is cancelled too (compare/run/stopping.py)."""
    results = results if results is not None else [None] * len(requests)
    origin_ns = origin_ns or perf_counter_ns()
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
    precise = precise_sends(arrivals_ns) if precise is None else precise
    cancelled_as = stop.cancelled_as if stop is not None else None

    async def one(index: int) -> None:
        if stop is not None:
            stop.sent()  # in flight from its due time: the harness's own queue behind max_concurrency counts
        async with slots or contextlib.nullcontext():
            record = await run_request(
                engine, requests[index], timeout_s, origin_ns, decode, arrivals_ns[index], cancelled_as
            )
        if stop is not None:
            stop.done(record)  # a cancelled one stays with the stop, apart from the cell's records
        if stop is None or not stop.is_cancelled(record):
            results[index] = record
        if on_request_done is not None:
            on_request_done()

    # one dispatcher, in due order: a task per request as it falls due (a task per request from the start made 5000
    # timers, and creating them delayed the first sends by tens of ms at 1000 req/s)
    tasks = []

    async def dispatch() -> None:
        for index in sorted(range(len(requests)), key=lambda i: arrivals_ns[i]):
            await sleep_until(origin_ns + arrivals_ns[index], precise)
            if stop is not None and stop.ended:
                return
            tasks.append(asyncio.ensure_future(one(index)))

    dispatcher = asyncio.ensure_future(dispatch())
    if stop is not None:
        stop.on_saturated = lambda: [task.cancel() for task in (dispatcher, *tasks)]
    try:
        await dispatcher
    except asyncio.CancelledError:
        if stop is None or not stop.saturated:
            raise  # an interrupt, not the cell's end
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        ended = isinstance(outcome, asyncio.CancelledError) and stop is not None and stop.saturated
        if isinstance(outcome, BaseException) and not ended:  # a task cancelled before its send: not sent
            raise outcome
    return results  # type: ignore[return-value]


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
