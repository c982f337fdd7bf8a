"""FAKE engine steps for the null engine (engine arg `step_alpha_ms` > 0): one loop serves every running request a
step at a time, as a continuous-batching engine does, and each step lasts a known alpha + beta * (tokens scheduled)
+ noise. Its step records, shaped like vLLM's (engines/vllm/telemetry.py), are the known answer of the step-cost
model (compare/analysis/stepcost.py), which must give alpha and beta back.

A step admits every waiting request (unless admissions are held), gives each running request a prefill chunk
(`chunk_tokens`, 0: the whole prompt) or one decode token, waits out its cost, and then delivers: a request whose
prefill completed gets its first token, a decoding one its next. Finished requests leave before the row is written."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np

SPIN_S = 0.002  # the loop's timers wake up to a millisecond late (epoll's timeout is in whole ms): spin the rest


@dataclass
class _Sequence:
    prompt_tokens: int
    max_tokens: int
    computed: int = 0  # prompt tokens prefilled so far
    emitted: int = 0
    delivered: asyncio.Queue = field(default_factory=asyncio.Queue)  # tokens per step; None at the end


class FakeStepLoop:
    def __init__(self, alpha_ms: float, beta_ms: float, noise_ms: float, chunk_tokens: int, rows: list[dict[str, Any]]):
        self.alpha_ms, self.beta_ms, self.noise_ms, self.chunk_tokens = alpha_ms, beta_ms, noise_ms, chunk_tokens
        self.rows = rows
        self.waiting: list[_Sequence] = []
        self.running: list[_Sequence] = []
        self.held = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._rng = np.random.default_rng(0)

    async def stream(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[int]:
        sequence = _Sequence(prompt_tokens, max_tokens)
        self.waiting.append(sequence)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())
        while (count := await sequence.delivered.get()) is not None:
            yield count

    async def release(self, num_requests: int) -> int:
        while len(self.waiting) < num_requests:
            await asyncio.sleep(0.0005)
        released_ns = time.perf_counter_ns()
        self.held = False
        self._wake.set()
        return released_ns

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            if self.held or not (self.waiting or self.running):
                self._wake.clear()
                await self._wake.wait()
                continue
            self.running += self.waiting
            self.waiting = []
            await self._step()

    async def _step(self) -> None:
        chunks = [self._chunk(s) for s in self.running]  # 0: a decode token
        prefills = [c for c in chunks if c]
        tokens = sum(prefills) + chunks.count(0)
        cost_ms = max(0.0, self.alpha_ms + self.beta_ms * tokens + self._rng.normal(0, self.noise_ms))
        started = time.perf_counter_ns()
        deadline = started + int(cost_ms * 1e6)
        await asyncio.sleep(max(0.0, (deadline - time.perf_counter_ns()) / 1e9 - SPIN_S))
        while time.perf_counter_ns() < deadline:  # the rest spun: the fake's step ends on time
            pass
        execute_ms = (time.perf_counter_ns() - started) / 1e6
        for sequence, chunk in zip(self.running, chunks):
            sequence.computed += chunk
            if sequence.computed == sequence.prompt_tokens:  # a completed prefill or a decode: one token out
                sequence.emitted += 1
                sequence.delivered.put_nowait(1)
            if sequence.emitted == sequence.max_tokens:
                sequence.delivered.put_nowait(None)
        self.running = [s for s in self.running if s.emitted < s.max_tokens]
        self.rows.append(
            {
                "t_ns": time.perf_counter_ns(),
                "running": len(self.running),
                "waiting": len(self.waiting),
                "prefill_requests": len(prefills),
                "prefill_tokens": sum(prefills),
                "decode_requests": chunks.count(0),
                "decode_tokens": chunks.count(0),
                "execute_ms": execute_ms,
            }
        )

    def _chunk(self, sequence: _Sequence) -> int:
        left = sequence.prompt_tokens - sequence.computed
        return min(left, self.chunk_tokens) if left and self.chunk_tokens else left
