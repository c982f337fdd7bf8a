"""Admission together (batch-shapes): a cell's B requests queue while vLLM's scheduler is paused, then start in one
engine step, so every step after it has exactly the cell's B sequences in phase (a request that arrived one step
late would run a chunk ahead of the others for the whole cell).

`AsyncLLM.pause_generation(mode="keep")` makes EngineCore queue new adds without scheduling them. The resume is a
utility call on the same input socket as the adds, sent after the last of them, so EngineCore has queued every add
before it resumes. The same idea as `vllm bench iterations` (pause, queue exactly B, resume)."""

from __future__ import annotations

import asyncio
import inspect
from time import perf_counter_ns

ADMISSION_TIMEOUT_S = 60.0  # the B adds reach the front end within this, or the cell fails (and the engine resumes)


async def hold(engine) -> bool:
    """Pause scheduling, keeping whatever is queued; False where this vLLM cannot (no pause with mode="keep")."""
    pause = getattr(engine, "pause_generation", None)
    if pause is None or "mode" not in inspect.signature(pause).parameters:
        return False
    await pause(mode="keep", clear_cache=False)
    return True


async def release(engine, num_requests: int) -> int:
    """Resume once `num_requests` requests are registered with the front end; the perf_counter_ns of the resume."""
    try:
        async with asyncio.timeout(ADMISSION_TIMEOUT_S):
            while engine.output_processor.get_num_unfinished_requests() < num_requests:
                await asyncio.sleep(0.0005)
        await asyncio.sleep(0)  # the last add's send, queued in the same task as its registration, goes out first
        return perf_counter_ns()
    finally:
        await engine.resume_generation()
