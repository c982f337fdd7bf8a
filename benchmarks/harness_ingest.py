"""Harness noise floor: how many tokens per second the runner can timestamp and record.

The `null` engine (a fake: no model) emits tokens with no delay, so the measured rate is the
harness's own per-token cost: the async-generator step, one `perf_counter_ns()` and two appends
per chunk, plus building the record afterwards. Run pinned to one core:

    taskset -c 0 .venv/bin/python benchmarks/harness_ingest.py

It also prices the loop-wait counter every cell installs (compare/run/instruments/loopwaits.py): two clock reads
around each
select, so its cost is per event-loop iteration, measured here on iterations that do nothing else (`sleep(0)`),
with and without it, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from compare.run.instruments.loopwaits import loop_waits
from compare.run.send import run_request
from engines.base import Request
from engines.null import NullEngine


async def measure(tokens: int, tokens_per_chunk: int, repeats: int) -> list[float]:
    engine = NullEngine(None, {"interval_ms": "0", "tokens_per_chunk": str(tokens_per_chunk)})
    await engine.start()
    request = Request("ingest", (1,), max_output_tokens=tokens, min_output_tokens=tokens)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        record = await run_request(engine, request, timeout_s=600, origin_ns=started)
        elapsed_s = (time.perf_counter_ns() - started) / 1e9
        assert record.ok and record.output_tokens == tokens, record.error
        rates.append(tokens / elapsed_s)
    await engine.stop()
    return rates


async def loop_iteration_ns(iterations: int, count_waits: bool) -> float:
    if count_waits:
        loop_waits()
    started = time.perf_counter_ns()
    for _ in range(iterations):
        await asyncio.sleep(0)
    return (time.perf_counter_ns() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2_000_000, help="tokens per measured request")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    print(f"cores available to this process: {cores} (pin with taskset -c 0 for the one-core figure)")
    for per_chunk in (1, 4):
        rates = asyncio.run(measure(args.tokens, per_chunk, args.repeats))
        print(
            f"null engine, {per_chunk} token(s)/chunk, {args.tokens:,} tokens x {args.repeats}: "
            f"median {statistics.median(rates):,.0f} tok/s (min {min(rates):,.0f}, max {max(rates):,.0f}) "
            f"= {1e9 / statistics.median(rates):.0f} ns per token, record building included"
        )
    per_iteration: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for count_waits in (False, True):
            per_iteration[count_waits].append(asyncio.run(loop_iteration_ns(200_000, count_waits)))
    plain, counted = (statistics.median(per_iteration[c]) for c in (False, True))
    print(
        f"event-loop iteration (sleep(0)), median of {args.repeats}: {plain:.0f} ns plain, {counted:.0f} ns with the "
        f"loop-wait counter (+{counted - plain:.0f} ns)"
    )


if __name__ == "__main__":
    main()
