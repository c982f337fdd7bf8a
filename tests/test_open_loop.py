"""Open-loop load: arrival schedules, latency from the scheduled send (a known answer from queueing
theory on the null engine, a fake by design), the concurrency cap, and SLO goodput."""

import asyncio
import math

import numpy as np
import pytest

from compare.analysis.slo import goodput, parse_slo
from compare.run.openloop import open_loop
from engines.base import Request, UsageError
from engines.null import NullEngine
from tests.bounds import above, near
from tests.fakes import record
from workloads.arrivals import arrival_offsets_ns

pytestmark = [pytest.mark.unit, pytest.mark.exclusive]  # real timers: run alone


def gaps_s(rate, burstiness, n=20000, seed=0):
    return np.diff(arrival_offsets_ns(n, rate, burstiness, seed)) / 1e9


def test_poisson_arrivals_are_seeded_with_the_right_mean_and_a_cv_of_one():
    gaps = gaps_s(50.0, 1.0)
    assert arrival_offsets_ns(100, 50.0, seed=3) == arrival_offsets_ns(100, 50.0, seed=3)
    assert arrival_offsets_ns(100, 50.0, seed=3) != arrival_offsets_ns(100, 50.0, seed=4)
    assert 1 / gaps.mean() == pytest.approx(50.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_the_dispersion_and_keeps_the_rate(burstiness):
    gaps = gaps_s(20.0, burstiness)
    assert 1 / gaps.mean() == pytest.approx(20.0, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(burstiness), rel=0.08)


def test_an_infinite_rate_sends_everything_at_once():
    assert arrival_offsets_ns(5, math.inf) == [0] * 5


def run_open_loop(engine_args, rate, count, tokens, max_concurrency=0, seed=0):
    async def go():
        engine = NullEngine(None, engine_args)
        await engine.start()
        requests = tuple(Request(f"r{i}", (1,), tokens, tokens) for i in range(count))
        records = await open_loop(
            engine, requests, tuple(arrival_offsets_ns(count, rate, seed=seed)), max_concurrency, 60
        )
        return records, engine

    return asyncio.run(go())


def test_queueing_shows_in_ttft_from_the_schedule_as_m_d_1_predicts():
    """One server (capacity 1), deterministic service S = 8 tokens x 1 ms, Poisson arrivals at 62.5 req/s (load 0.5):
    Pollaczek-Khinchine gives a mean wait of rate x S^2 / (2 (1 - load)) = 4 ms, so TTFT = 4 + 1 ms on average."""
    records, _ = run_open_loop({"interval_ms": "1", "capacity": "1"}, 62.5, 300, 8)
    ttft = np.array([r.ttft_ms for r in records])
    service = np.mean([(r.chunk_ns[-1] - r.chunk_ns[0]) / 1e6 for r in records]) * 8 / 7  # measured S, ~8 ms
    load = 62.5 * service / 1e3
    expected_wait = 62.5 * (service / 1e3) ** 2 / (2 * (1 - load)) * 1e3
    assert all(r.scheduled_ns is not None and r.send_lag_ns >= 0 for r in records)
    expected = expected_wait + service / 8
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 5.39 (headroom 0.61)
    near(ttft.mean(), expected, 0.35 * expected, "mean TTFT from the schedule (ms), M/D/1")  # 35%: 300 requests
    assert ttft.mean() > 2 * service / 8  # the wait is there: a closed loop would show none


def test_max_concurrency_caps_requests_in_flight_and_the_wait_counts():
    """All 12 are due at once with 3 slots: 4 waves. Checked by order on one clock, so no host is too slow for it: the
    first 3 went before any request ended, each later one only after a request ended (it waited for a slot), and its
    wait counts in its TTFT, from the schedule."""
    records, engine = run_open_loop({"interval_ms": "2"}, math.inf, 12, 5, max_concurrency=3)
    by_send = sorted(records, key=lambda r: r.sent_ns)
    ends = sorted(r.finished_at_ns for r in records)
    assert all(r.sent_ns < ends[0] for r in by_send[:3])  # the first wave did not wait
    assert all(by_send[j].sent_ns >= ends[j - 3] for j in range(3, 12))  # the j-th sent only after j - 2 had ended
    for r in records:
        assert r.scheduled_ns == 0 and r.send_lag_ns == r.sent_ns  # due at the origin: the lag is the slot wait
        assert r.ttft_ms * 1e6 >= r.send_lag_ns + 1.9e6  # from the schedule: the wait, then the 2 ms interval
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 34.61 (headroom 2.30)
    above(by_send[-1].ttft_ms, 3 * 5 * 2, 3 * 5 * 2 + 2, "the last wave's TTFT (ms): three waves of 5 x 2 ms waited")


def test_goodput_counts_the_requests_that_meet_every_limit():
    fast = record([100, 110, 120], end_ms=125)
    slow_first = record([900, 910, 920], end_ms=930)
    slow_tokens = record([100, 300, 500], end_ms=510)
    failed = record([50], ok=False)
    result = goodput([fast, slow_first, slow_tokens, failed], parse_slo("ttft_ms=500,tpot_ms=50"), wall_s=2.0)
    assert (result["num_met"], result["share_met"]) == (1, 0.25)
    assert result["goodput_request_per_s"] == 0.5 and result["goodput_output_tok_per_s"] == 1.5
    assert result["misses_by_limit"] == {"ttft_ms": 2, "tpot_ms": 2} and result["most_missed"] in ("ttft_ms", "tpot_ms")


def test_slo_presets_and_bad_limits():
    assert parse_slo("preset=mlperf-llama3-8b") == {"ttft_ms": 2000.0, "tpot_ms": 100.0}
    assert parse_slo("preset=mlperf-llama3-8b,e2e_ms=9000")["e2e_ms"] == 9000.0
    for bad in ("ttft=5", "preset=nope", "tpot_ms=fast", ""):
        with pytest.raises(UsageError):
            parse_slo(bad)
