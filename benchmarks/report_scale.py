"""The trace and the HTML page at scale: one FAKE cell of N requests (default 10,000) of 32 chunks each, with an
engine step record per 10 ms, written as Chrome Trace Event JSON and as the HTML page; prints each file's size, the
time to write it, and the time headless Chromium takes to load the page and render every plot.

    .venv/bin/python benchmarks/report_scale.py [--requests 10000] [--chunks 32]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from compare.report.html import write_html
from compare.report.trace import cell_trace
from compare.results.records import RequestRecord

MS = 1_000_000


def fake_cell(num_requests: int, chunks: int, concurrency: int = 64) -> dict:
    """A FAKE closed-loop cell: `concurrency` requests at a time, 20 ms to the first token, 10 ms a chunk."""
    records, rows = [], []
    for index in range(num_requests):
        sent = (index // concurrency) * (20 + 10 * chunks) * MS + index % concurrency * 10_000
        offsets = [20 * MS + 10 * MS * k for k in range(chunks)]
        records.append(
            RequestRecord(
                f"r{index}",
                64,
                chunks,
                sent_ns=sent,
                end_ns=offsets[-1],
                chunk_ns=offsets,
                chunk_tokens=[1] * chunks,
                output_tokens=chunks,
                finish_reason="length",
            )
        )
    end = max(r.sent_ns + r.end_ns for r in records)
    for step in range(1, end // (10 * MS)):
        rows.append({"t_ns": step * 10 * MS, "running": concurrency, "decode_tokens": concurrency, "prefill_tokens": 0})
    return {
        "cell_id": f"c{concurrency}-fake",
        "requests": records,
        "warmups": [],
        "cache_resets": [],
        "telemetry": {"source": "engine steps", "rows": rows},
        "summary": {"wall_s": end / 1e9},
        "warnings": [],
        "config": {"concurrency": concurrency},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=32)
    args = parser.parse_args()
    cell = fake_cell(args.requests, args.chunks)
    head = {"engine": {"name": "null"}, "model": {"spec": "fake"}, "scenario": {"name": "scale"}}
    run = SimpleNamespace(path=Path("null_scale_fake.json"), doc={**head, "cells": [cell]})
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        started = time.perf_counter()
        trace = cell_trace(run, cell)
        (out / "trace.json").write_text(json.dumps(trace))
        trace_s = time.perf_counter() - started
        print(
            f"trace: {(out / 'trace.json').stat().st_size / 2**20:.1f} MiB, {len(trace['traceEvents'])} events, "
            f"written in {trace_s:.1f} s; {trace['otherData'].get('decimated', 'not decimated')}"
        )
        (out / "report.md").write_text("# scale\n")
        started = time.perf_counter()
        page = write_html([run], {id(run): "null"}, out / "report.md", out)
        print(f"page: {page.stat().st_size / 2**20:.1f} MiB, written in {time.perf_counter() - started:.1f} s")
        chromium = shutil.which("chromium")
        if chromium is None:
            print("no chromium: load time not measured")
            return
        started = time.perf_counter()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=60000", "--dump-dom"]
        dom = subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True).stdout
        status = re.search(r'id="render-status">([^<]*)', dom)
        print(f"chromium: loaded and rendered in {time.perf_counter() - started:.1f} s: {status and status[1]}")


if __name__ == "__main__":
    main()
