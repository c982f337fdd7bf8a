"""Open-loop scheduler cost: how late each request leaves against its schedule, at 10, 100 and 1000 req/s, with
and without each of the harness's measures (compare/run/instruments/gcquiet.py, compare/run/openloop.py sleep_until):

- `gc`: the collector as Python runs it, or held off for the window (collect, freeze, disable: the harness's way);
- `wait`: the loop's timer alone, or the timer to 1.5 ms before the due time and then yields until it (the
  harness uses it at >= 100 req/s).

The `null` engine (a fake: no model) answers each request with a few tokens at a fixed interval, so what is
measured is the harness: Poisson arrivals (seeded), one task per request waiting for its due time, then the
request. Send error = actual send - scheduled send, per request; the harness's CPU share over the run and the
collections inside it are printed beside it. Run pinned to one core:

    taskset -c 0 .venv/bin/python benchmarks/open_loop_send_error.py
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from compare.run.instruments.gcquiet import GcQuiet
from compare.run.openloop import open_loop
from engines.base import Request
from engines.null import NullEngine
from workloads.arrivals import arrival_offsets_ns

VARIANTS = (("on", False), ("off", False), ("on", True), ("off", True))  # (gc, precise wait)


async def measure(rate: float, seconds: float, tokens: int, gc_mode: str, precise: bool) -> dict[str, float]:
    engine = NullEngine(None, {"interval_ms": "5", "tokens_per_chunk": "1"})
    await engine.start()
    count = int(rate * seconds)
    requests = tuple(Request(f"r{i}", (1, 2, 3), tokens, tokens) for i in range(count))
    arrivals = arrival_offsets_ns(count, rate, seed=0)
    # "enabled" only watches: the collector runs as Python runs it; "disabled" is the harness's way
    quiet = GcQuiet("disabled" if gc_mode == "off" else "enabled")
    async with quiet:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        records = await open_loop(engine, requests, tuple(arrivals), 0, timeout_s=60, precise=precise)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    lag_ms = np.array([r.send_lag_ns for r in records]) / 1e6
    pauses = quiet.result()
    return {
        "requests": count,
        "p50_ms": float(np.percentile(lag_ms, 50)),
        "p99_ms": float(np.percentile(lag_ms, 99)),
        "max_ms": float(lag_ms.max()),
        "cpu_share": cpu / wall,
        "collections": pauses["collections"],
        "gc_max_ms": pauses["max_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,100,1000", help="req/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="scheduled duration per rate")
    parser.add_argument("--tokens", type=int, default=8, help="tokens per request (5 ms apart)")
    args = parser.parse_args()
    print(
        f"{'rate':>6} {'gc':>4} {'wait':>12} {'requests':>9} {'send error p50':>15} {'p99':>9} {'max':>9} "
        f"{'harness CPU':>12} {'collections (longest)':>22}"
    )
    for rate in (float(r) for r in args.rates.split(",")):
        for gc_mode, precise in VARIANTS:
            row = asyncio.run(measure(rate, args.seconds, args.tokens, gc_mode, precise))
            wait = "timer+yield" if precise else "timer"
            print(
                f"{rate:6g} {gc_mode:>4} {wait:>12} {row['requests']:9d} {row['p50_ms']:12.3f} ms "
                f"{row['p99_ms']:6.3f} ms "
                f"{row['max_ms']:6.3f} ms {row['cpu_share']:11.0%} {row['collections']:>12d} ({row['gc_max_ms']:.1f} "
                f"ms)"
            )


if __name__ == "__main__":
    main()
