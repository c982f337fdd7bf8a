"""HTTP mode's client ceiling: how many SSE events per second one harness client process can take in.

A FAKE SSE server (tests/fake_sse_server.py, no model) answers every request at once, pinned to the last
core, in two ways: the whole response in one write (best case: one body read carries ~130 events), and one write
per event, yielding between them (as a real server sends one event per token: few events per read). The harness's
own HTTP path (engines/http_openai.py through the runner's closed loop, stamps and
records included) runs pinned to the first core(s). At each concurrency it prints SSE events/s, requests/s,
TTFT p50/p99 (the median of `--repeats` runs) and the TTFT the client adds over c=1 (the server answers at once,
so all of it is client-side queueing), the client's CPU share and events per body read.

    .venv/bin/python benchmarks/http_client_ceiling.py                  # one client process, c=1..256
    .venv/bin/python benchmarks/http_client_ceiling.py --client-procs 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compare.run.clients.clientprocs import ClientPlan, run_client_procs  # noqa: E402
from engines.base import Request  # noqa: E402


WRITES = {"per-response": [], "per-event": ["--per-event"]}


def start_server(cpu: int, use_uvloop: bool, writes: str = "per-response") -> tuple[subprocess.Popen, str]:
    argv = [
        sys.executable,
        str(ROOT / "tests" / "fake_sse_server.py"),
        "--interval-ms",
        "0",
        "--cpu",
        str(cpu),
        *WRITES[writes],
    ]
    server = subprocess.Popen(argv + (["--uvloop"] if use_uvloop else []), stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    return server, line.split(" on ", 1)[1].strip()


def requests_for(concurrency: int, output_tokens: int, target_events: int) -> tuple[Request, ...]:
    count = max(8 * concurrency, target_events // output_tokens)
    return tuple(Request(f"r{i}", (1,) * 16, output_tokens, output_tokens) for i in range(count))


def measure(url: str, concurrency: int, procs: int, args) -> dict:
    requests = requests_for(concurrency, args.output_tokens, args.target_events)
    plan = ClientPlan(requests=requests, concurrency=concurrency, arrivals_ns=None, timeout_s=600.0)
    started = time.perf_counter_ns()
    outcome = asyncio.run(run_client_procs({"endpoint": url, "server": "vllm"}, plan, procs, cpus=args.client_cpus))
    wall_s = (time.perf_counter_ns() - started) / 1e9
    records = outcome.records
    failed = [r for r in records if not r.ok]
    if failed:
        raise SystemExit(f"error: {len(failed)} request(s) failed, e.g. {failed[0].error}")
    span_s = (max(r.finished_at_ns for r in records) - min(r.sent_ns for r in records)) / 1e9
    events = sum(r.engine["sse_events"] for r in records)
    reads = sum(r.engine["sse_reads"] for r in records)
    ttfts = sorted(r.ttft_ms for r in records)
    return {
        "concurrency": concurrency,
        "procs": procs,
        "requests": len(records),
        "span_s": span_s,
        "wall_s": wall_s,
        "events_per_s": events / span_s,
        "requests_per_s": len(records) / span_s,
        "ttft_p50_ms": statistics.median(ttfts),
        "ttft_p99_ms": ttfts[int(0.99 * (len(ttfts) - 1))],
        "events_per_read": events / reads,
        "cpu_share": [w["process_cpu_share"] for w in outcome.workers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,16,64,256")
    parser.add_argument("--client-procs", default="1", help="client processes, comma separated (e.g. 1,2)")
    parser.add_argument("--output-tokens", type=int, default=128, help="tokens (SSE token events) per request")
    parser.add_argument("--target-events", type=int, default=200_000, help="about this many events per point")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; the median by events/s is printed")
    parser.add_argument("--server-uvloop", action="store_true", help="the fake server on uvloop")
    parser.add_argument(
        "--server-writes",
        default="per-response,per-event",
        help="per-response (one write per response: the best case), per-event (one write per event), "
        "or both (default), one table each",
    )
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_cpu = cores[-1]
    args.client_cpus = cores[:-1] or cores
    for writes in args.server_writes.split(","):
        table(writes, server_cpu, args)


def table(writes: str, server_cpu: int, args) -> None:
    server, url = start_server(server_cpu, args.server_uvloop, writes)
    print(
        f"fake SSE server (instant answers, one write {writes.removeprefix('per-')}) on core {server_cpu}; client on "
        f"core(s) {args.client_cpus}; {args.output_tokens} token events per request"
    )
    print(
        f"{'procs':>5} {'c':>4} {'requests':>8} {'events/s':>10} {'req/s':>8} {'TTFT p50':>9} {'p99 ms':>7} "
        f"{'added':>7} {'ev/read':>7}  client CPU"
    )
    try:
        for procs in (int(p) for p in args.client_procs.split(",")):
            base_ttft = None
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                rows = sorted(
                    (measure(url, concurrency, procs, args) for _ in range(args.repeats)),
                    key=lambda r: r["events_per_s"],
                )
                row = rows[len(rows) // 2]  # the median run by events/s
                base_ttft = row["ttft_p50_ms"] if base_ttft is None else base_ttft
                cpu = " ".join(f"{share:.0%}" for share in row["cpu_share"])
                print(
                    f"{procs:>5} {concurrency:>4} {row['requests']:>8} {row['events_per_s']:>10,.0f} "
                    f"{row['requests_per_s']:>8,.0f} {row['ttft_p50_ms']:>9.2f} {row['ttft_p99_ms']:>7.2f} "
                    f"{row['ttft_p50_ms'] - base_ttft:>7.2f} {row['events_per_read']:>7.1f}  {cpu}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
