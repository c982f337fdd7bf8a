"""Known-answer runs of the null engine (a fake engine by design) through the real runner."""

import asyncio

import pytest

from compare.analysis.metrics import summarize
from compare.results.records import itl_samples_ns
from compare.run.runner import closed_loop
from engines.base import Request
from engines.null import NullEngine
from tests.bounds import near

pytestmark = [pytest.mark.unit, pytest.mark.exclusive]  # real timers: run alone
TOLERANCE_MS = 4.0  # event-loop wake-up jitter on a loaded 2-core CI machine


def run(engine_args, concurrency, num_requests, tokens):
    async def go():
        engine = NullEngine(None, engine_args)
        await engine.start()
        requests = tuple(Request(f"r{i}", (1, 2, 3), tokens, tokens) for i in range(num_requests))
        records = await closed_loop(engine, requests, concurrency, timeout_s=60)
        await engine.stop()
        return records

    return asyncio.run(go())


def test_fixed_interval_gives_known_ttft_itl_and_throughput():
    records = run({"interval_ms": "20", "prefill_ms": "30"}, concurrency=4, num_requests=4, tokens=20)
    s = summarize(records)
    assert all(r.output_tokens == 20 and r.finish_reason == "length" for r in records)
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 50.52 (headroom 0.87)
    near(s["ttft_ms"]["p50"], 50, TOLERANCE_MS, "TTFT p50 (ms): prefill + one interval")
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 20.19 (headroom 0.63)
    near(s["tpot_ms"]["mean"], 20, 0.5, "TPOT mean (ms)")  # absolute deadlines: no drift; e2e/n would read 21.5
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 20.44 (headroom 0.89)
    near(s["itl_ms"]["p50"], 20, TOLERANCE_MS, "ITL p50 (ms)")
    # 4 streams x 20 tokens in 30 + 20 x 20 ms = 430 ms
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 184.2 (headroom 0.81)
    near(s["output_tok_per_s"], 80 / 0.430, 0.05 * 80 / 0.430, "output tok/s")


def test_capacity_makes_later_requests_queue_for_a_whole_request():
    records = run({"interval_ms": "10", "capacity": "2"}, concurrency=4, num_requests=4, tokens=10)
    ttfts = sorted(r.ttft_ms for r in records)
    for ttft in ttfts[:2]:
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.53 (headroom 0.87)
        near(ttft, 10, TOLERANCE_MS, "TTFT of a request holding a slot (ms)")
    for ttft in ttfts[2:]:  # two wakes' lateness adds up here; the defects: no wait (10 ms), two requests' (210 ms)
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 112.8 (headroom 0.86)
        near(ttft, 110, 20, "TTFT of a queued request (ms): waited for 10 x 10 ms")


def test_multi_token_chunks_are_attributed_evenly():
    records = run({"interval_ms": "20", "tokens_per_chunk": "4"}, concurrency=1, num_requests=1, tokens=10)
    (r,) = records
    assert r.chunk_tokens == [4, 4, 2] and len(r.chunk_ns) == 3
    assert r.output_tokens == len(r.token_ns) == 10
    assert summarize(records)["num_chunks"] == 3
    # first chunk: 3 zero gaps; then each later chunk's 20 ms split evenly: 4 gaps of 5 ms, then 2 of 10 ms
    gaps_ms = itl_samples_ns(r.chunk_ns, r.chunk_tokens) / 1e6
    assert len(gaps_ms) == 9
    assert gaps_ms[:3] == pytest.approx([0, 0, 0], abs=1e-9)
    for gap in gaps_ms[3:7]:
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 5.108 (headroom 0.89)
        near(gap, 5, TOLERANCE_MS / 4, "per-token gap of a 4-token chunk (ms)")
    for gap in gaps_ms[7:]:
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.24 (headroom 0.88)
        near(gap, 10, TOLERANCE_MS / 2, "per-token gap of a 2-token chunk (ms)")
    assert gaps_ms.sum() == pytest.approx((r.chunk_ns[-1] - r.chunk_ns[0]) / 1e6)
