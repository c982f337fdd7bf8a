"""Which HTTP stack reads SSE bodies fastest: the transports HTTP mode could use, on the same FAKE instant SSE
server (tests/fake_sse_server.py, pinned to the last core), each client pinned to the first core, at
concurrency 16. Every client reads each response body per read and splits it into SSE events; JSON is
decoded with the parser named. It prints events/s per client, median of `--repeats`.

    .venv/bin/python benchmarks/http_transports.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_client_ceiling import start_server  # noqa: E402
from engines.sse_client import SseClient, SseSplitter  # noqa: E402

BODY = json.dumps({"model": "fake-sse", "prompt": [1] * 16, "max_tokens": 128, "stream": True}).encode()


async def ours(url: str, requests: int, concurrency: int, loads) -> int:
    client = SseClient(url)
    events = 0

    async def worker(count: int) -> None:
        nonlocal events
        for _ in range(count):
            async for payloads in client.stream("/v1/completions", BODY):
                for data in payloads:
                    events += 1
                    if data != b"[DONE]":
                        loads(data)

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    await client.aclose()
    return events


async def count_events(reads, loads) -> int:
    """One response: each read split into SSE events, each event's JSON decoded."""
    splitter, events = SseSplitter(), 0
    async for data in reads:
        for payload in splitter.feed(data):
            events += 1
            if payload != b"[DONE]":
                loads(payload)
    return events


async def with_httpx(url: str, requests: int, concurrency: int, loads) -> int:
    import httpx

    events = 0
    async with httpx.AsyncClient(
        base_url=url, timeout=None, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def worker(count: int) -> None:
            nonlocal events
            for _ in range(count):
                async with client.stream("POST", "/v1/completions", content=BODY) as response:
                    events += await count_events(response.aiter_raw(), loads)

        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return events


async def with_aiohttp(url: str, requests: int, concurrency: int, loads) -> int:
    import aiohttp

    events = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker(count: int) -> None:
            nonlocal events
            for _ in range(count):
                async with session.post("/v1/completions", data=BODY) as response:
                    events += await count_events(response.content.iter_any(), loads)

        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return events


def parsers() -> dict:
    found = {"json": json.loads}
    try:
        import orjson

        found["orjson"] = orjson.loads
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server, url = start_server(cores[-1], use_uvloop=False)
    os.sched_setaffinity(0, {cores[0]})
    loops = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop

        loops["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        print(f"{'transport':<10} {'json':<7} {'loop':<8} {'events/s (median)':>18}  runs")
        for name, client in (("httpx", with_httpx), ("aiohttp", with_aiohttp), ("enginebench", ours)):
            for parse_name, loads in parsers().items():
                for loop_name, new_loop in loops.items():
                    rates = []
                    for _ in range(args.repeats):
                        loop = new_loop()
                        started = time.perf_counter()
                        events = loop.run_until_complete(client(url, args.requests, args.concurrency, loads))
                        rates.append(events / (time.perf_counter() - started))
                        loop.close()
                    runs = " ".join(f"{r / 1e3:.0f}k" for r in rates)
                    print(
                        f"{name:<10} {parse_name:<7} {loop_name:<8} {statistics.median(rates):>18,.0f}  {runs}",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
