"""Saturation found while an open-loop cell runs (compare/analysis/saturation.py, compare/run/stopping.py): a FAKE
queue (M/D/4, simulated, 100 seeds) at 0.5x its capacity is never declared saturated and at 1.5x always is; through
the whole harness on the null engine (a fake with 4 slots), the cell over capacity ends early with what it measured
and `--find-max-rate` rejects it in seconds."""

import heapq
import json

import numpy as np
import pytest

from compare.analysis.saturation import CHECK_EVERY_S, saturation
from compare.cli.main import main as compare_main

pytestmark = pytest.mark.unit
SLOTS, SERVICE_S = 4, 0.1  # a FAKE queue's capacity: 4 / 0.1 s = 40 req/s


def fake_queue_saturates_at(load: float, seed: int, num_requests: int = 300) -> float | None:
    """A FAKE M/D/4 queue at `load` x its capacity, watched as the runner watches it (every CHECK_EVERY_S: the sends
    so far with their in-flight counts, the completed requests' E2E latencies); when saturation is declared, or None."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / (load * SLOTS / SERVICE_S), num_requests))
    free, starts = [0.0] * SLOTS, []
    for due in arrivals:
        start = max(due, heapq.heappop(free))
        heapq.heappush(free, start + SERVICE_S)
        starts.append(start)
    ends = np.asarray(starts) + SERVICE_S
    e2e_ms = (np.asarray(starts) + SERVICE_S - arrivals) * 1e3
    in_flight = [int(np.sum(ends[: i + 1] > arrivals[i])) for i in range(num_requests)]
    by_end = np.argsort(ends)
    for now in np.arange(CHECK_EVERY_S, ends.max(), CHECK_EVERY_S):
        sent = int(np.searchsorted(arrivals, now, side="right"))
        done = by_end[ends[by_end] <= now]
        if saturation(list(zip(arrivals[:sent], in_flight[:sent])), [(arrivals[i], e2e_ms[i]) for i in done]):
            return float(now)
    return None


def test_a_fake_queue_at_half_its_capacity_is_never_declared_saturated():
    declared = [seed for seed in range(100) if fake_queue_saturates_at(0.5, seed) is not None]
    assert declared == []


def test_a_fake_queue_at_one_and_a_half_times_its_capacity_always_is_and_early():
    times = [fake_queue_saturates_at(1.5, seed) for seed in range(100)]
    assert all(t is not None for t in times)
    schedule_s = 300 / 60  # 300 requests at 60 req/s
    assert max(times) < schedule_s and np.median(times) < schedule_s / 2, (np.median(times), max(times))


def _null_run(tmp_path, *flags: str) -> list[dict]:
    args = ["--engine", "null", "--scenario", "concurrent", "--warmups", "0", "--input-tokens", "16"]
    args += ["--output-tokens", "10", "--engine-arg", "capacity=4", "--out", str(tmp_path), "--no-progress", *flags]
    assert compare_main(args) == 0
    return [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]


def test_the_null_cell_over_capacity_ends_saturated_and_the_one_under_runs_out(tmp_path):
    # 4 slots x 100 ms a request: 40 req/s; 20 req/s is 0.5x, 60 req/s 1.5x (300 requests: a 5 s schedule)
    (doc,) = _null_run(tmp_path, "--request-rate", "20,60", "--num-requests", "300", "--end-saturated")
    under, over = doc["cells"]
    assert under["stop"]["saturation"]["saturated"] is False and len(under["requests"]) == 300
    saturation_ = over["stop"]["saturation"]
    assert saturation_["saturated"] and over["stop"]["ended_by"] == "saturated"
    assert saturation_["schedule_left_s"] > 0 and over["stop"]["num_sent"] < 300, over["stop"]
    # what was measured stays: completed requests as records, the cancelled ones apart, none of them lost
    cancelled = saturation_["cancelled"]
    assert all(r["error"] is None for r in over["requests"]) and cancelled
    assert all(r["error"] == "cancelled: the cell saturated" for r in cancelled)
    assert len(over["requests"]) + len(cancelled) == over["stop"]["num_sent"] < 300
    assert any(w.startswith("saturated at 60.0 req/s") for w in over["warnings"])


def test_find_max_rate_rejects_a_saturated_rate_without_waiting_it_out(tmp_path):
    # 30 req/s (0.75x) holds; 60 (1.5x) saturates: 400 requests are a 6.7 s schedule, found in about 2 s
    flags = ("--request-rate", "30", "--num-requests", "400", "--find-max-rate", "2", "--slo", "ttft_ms=300")
    docs = _null_run(tmp_path, *flags)
    (search,) = [d for d in docs if d.get("kind") == "find_max_rate"]
    held, rejected = search["steps"]
    assert held["request_rate"] == 30 and held["holds"] and not held["saturated"]
    assert rejected["request_rate"] == 60 and rejected["saturated"] and not rejected["holds"]
    assert search["max_rate_held"] == 30 and search["time_saved_s_at_least"] > 0, search
    assert rejected["schedule_left_s"] == search["time_saved_s_at_least"]
