"""One request through a streaming engine, stamped chunk by chunk; or a whole cell through a batch engine."""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import Callable

from compare.results.recorder import StreamRecorder, batch_records
from compare.results.records import RequestRecord
from compare.run.instruments.nvtx_marks import REQUEST_MARKS
from engines.base import BatchEngine, Request, StreamingEngine

Decode = Callable[[list[int]], str]


async def run_request(
    engine: StreamingEngine,
    request: Request,
    timeout_s: float,
    origin_ns: int,
    decode: Decode | None = None,
    scheduled_ns: int | None = None,
    cancelled_as: Callable[[], str | None] | None = None,
) -> RequestRecord:
    """`cancelled_as`: why a cancellation now ends this request as a record (the cell ended), or None to let it
    through (an interrupt)."""
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
    except asyncio.CancelledError:
        error = cancelled_as() if cancelled_as is not None else None
        if error is None:
            raise
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
