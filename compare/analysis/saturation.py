"""An open-loop cell over capacity, found while it runs: the in-flight count and latency both grow without bound.

The series: the requests in flight at each send (the harness's own queue behind max_concurrency included), and each
completed request's E2E latency at its due time. E2E, not TTFT: an engine that admits every request into its running
batch (vLLM below max_num_seqs) keeps TTFT flat over capacity and slows every token instead; with throughput bounded,
a growing in-flight count means a growing E2E whatever the scheduler (Little's law). The first quarter of each series
is dropped (a queue filling from empty to its level is not saturation). Each is cut into BLOCKS blocks of equal count,
and the block means are regressed on the blocks' mean times (batch means: neighbouring samples of a queue are
correlated, block means much less). A series grows when the slope's one-sided 99.9% interval (t, BLOCKS - 2 degrees of
freedom) lies above zero and the fitted rise is large: in flight at least doubled and up by MIN_INFLIGHT_RISE
requests, E2E up by MIN_LATENCY_RISE of its first block. Both must grow (a host that slows for a moment raises latency
alone, a burst the count alone), and the in-flight count must still grow over the later half alone (a queue that grew
and stopped is a burst). At most one check per CHECK_EVERY_S, none before MIN_SENDS sends and MIN_ENDS ends.

Its operating curve on a FAKE M/D/4 queue, 300 Poisson requests, 100 seeds per load (tests/test_saturation.py,
docs/measurements.md): declared saturated at 0.5x capacity 0/100, 0.8x 1/100, 0.9x 7/100, 1.1x 52/100, 1.5x
100/100. A trend test in finite time cannot tell 0.9x from 1.1x; it errs towards running the cell out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.analysis.stats import slope_with_error

BLOCKS = 8
T_999_6DOF = 5.208  # Student's t, one-sided 99.9%, BLOCKS - 2 = 6 degrees of freedom
MIN_SENDS = 80
MIN_ENDS = 32
MIN_INFLIGHT_RISE = 4.0
MIN_LATENCY_RISE = 0.5
CHECK_EVERY_S = 0.25
RULE = (
    f"in flight at each send and E2E at each end, first quarter dropped, {BLOCKS} block means each vs time: both "
    f"slopes' one-sided 99.9% intervals above zero, in flight at least doubled and up by >= {MIN_INFLIGHT_RISE:g} "
    f"and still rising over the later half, E2E up by >= {MIN_LATENCY_RISE:.0%}; checked from {MIN_SENDS} sends and "
    f"{MIN_ENDS} ends"
)


def block_trend(times_s: np.ndarray, values: np.ndarray) -> dict[str, float] | None:
    """The block means' least-squares slope (per second), its t statistic, the first block's mean and the fitted
    rise over the samples' span; None with fewer than two samples a block."""
    if len(values) < 2 * BLOCKS:
        return None
    order = np.argsort(times_s, kind="stable")
    blocks_t = np.array([b.mean() for b in np.array_split(times_s[order], BLOCKS)])
    blocks_v = np.array([b.mean() for b in np.array_split(values[order], BLOCKS)])
    fit = slope_with_error(blocks_t, blocks_v)
    if fit is None:
        return None
    slope, error = fit
    return {
        "slope_per_s": slope,
        "t": slope / error if error > 0 else (np.inf if slope > 0 else 0.0),
        "first": float(blocks_v[0]),
        "rise": slope * float(times_s.max() - times_s.min()),
    }


def grows(trend: dict[str, float] | None, min_rise: float, min_ratio: float) -> bool:
    return (
        trend is not None
        and trend["t"] > T_999_6DOF
        and trend["rise"] >= min_rise
        and trend["rise"] >= min_ratio * max(trend["first"], 0.0)
    )


def saturation(sends: list[tuple[float, int]], ends: list[tuple[float, float]]) -> dict[str, Any] | None:
    """`sends`: (seconds since the cell's start, requests in flight with this one); `ends`: (due time in seconds,
    E2E in ms) of completed requests. The evidence where both grow; None where they do not (or too few samples)."""
    if len(sends) < MIN_SENDS or len(ends) < MIN_ENDS:
        return None
    send_t, in_flight = (np.asarray(column, dtype=np.float64)[len(sends) // 4 :] for column in zip(*sends))
    end_t, e2e_ms = (np.asarray(column, dtype=np.float64)[len(ends) // 4 :] for column in zip(*ends))
    in_flight_trend, e2e_trend = block_trend(send_t, in_flight), block_trend(end_t, e2e_ms)
    if not grows(in_flight_trend, MIN_INFLIGHT_RISE, 1.0) or not grows(e2e_trend, 0.0, MIN_LATENCY_RISE):
        return None
    half = len(in_flight) // 2
    later = block_trend(send_t[half:], in_flight[half:])
    if later is None or later["t"] <= T_999_6DOF:  # a queue that grew and has stopped growing is a burst
        return None
    return {
        "in_flight": in_flight_trend,
        "e2e_ms": e2e_trend,
        "num_sends": len(sends),
        "num_ends": len(ends),
    }
