"""A channel from an engine's worker thread to the event loop, for engines with blocking generate loops."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator

_END = object()


class ThreadChannel:
    """Items put in the worker thread arrive in the loop in order; `cancel` asks the thread to stop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()

    def put(self, item: Any) -> None:  # worker thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def close(self) -> None:  # worker thread, always last
        self.put(_END)

    async def items(self) -> AsyncIterator[Any]:  # event loop
        while (item := await self.queue.get()) is not _END:
            yield item


class OneWorkerTelemetry:
    """For engines that run one request at a time in one worker thread: requests handed to it and not finished.
    One runs, the rest wait in the worker's queue (a mixin; the engine counts `in_flight` around generate)."""

    in_flight = 0

    async def telemetry_snapshot(self) -> dict[str, int]:
        return {"running": min(1, self.in_flight), "waiting": max(0, self.in_flight - 1)}
