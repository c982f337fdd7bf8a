"""Ratios of two runs' statistics (b over a), each with a 95% bootstrap interval: requests are resampled
in each run on its own (compare/analysis/stats.py). With fewer than MIN_REQUESTS requests on a side there is no
interval to speak of (a bootstrap of one request has none): the interval is then (0, inf), which no
claim passes or fails."""

from __future__ import annotations

import numpy as np

from compare.analysis.cellstats import latency_resamples, ok_records, throughput_resamples
from compare.analysis.stats import Interval, mean_stat, ratio_interval, resampled

MIN_REQUESTS = 5


def unbounded(value: float) -> Interval:
    return Interval(value, 0.0, float("inf"))


def mean_ratio(a: np.ndarray, b: np.ndarray) -> Interval:
    """mean(b) / mean(a), requests resampled in each run."""
    if min(len(a), len(b)) < MIN_REQUESTS:
        return unbounded(float(b.mean() / a.mean()))
    return ratio_interval(
        resampled(a, mean_stat, seed=1), resampled(b, mean_stat, seed=2), float(a.mean()), float(b.mean())
    )


def percentile_pair(cell_a: dict, cell_b: dict, what: str, q: float) -> tuple[float, float, Interval]:
    """Each cell's measured percentile, and b / a with its interval (one bootstrap per cell)."""
    records_a, records_b = ok_records(cell_a), ok_records(cell_b)
    a, a_res = latency_resamples(records_a, what, q, seed=1)
    b, b_res = latency_resamples(records_b, what, q, seed=2)
    if min(len(records_a), len(records_b)) < MIN_REQUESTS:
        return a, b, unbounded(b / a)
    return a, b, ratio_interval(a_res, b_res, a, b)


def percentile_ratio(cell_a: dict, cell_b: dict, what: str, q: float) -> Interval:
    return percentile_pair(cell_a, cell_b, what, q)[2]


def throughput_ratio(cell_a: dict, cell_b: dict) -> Interval:
    """Measured output tok/s of b over a, with the interval of the Little's-law estimates (cellstats.py)."""
    concurrency = cell_a["config"]["concurrency"]
    a_res = throughput_resamples(ok_records(cell_a), concurrency, seed=1)
    b_res = throughput_resamples(ok_records(cell_b), concurrency, seed=2)
    measured = cell_b["summary"]["output_tok_per_s"] / cell_a["summary"]["output_tok_per_s"]
    if min(len(ok_records(cell_a)), len(ok_records(cell_b))) < MIN_REQUESTS:
        return unbounded(measured)
    ratios = b_res / a_res
    low, high = np.percentile(ratios, [2.5, 97.5]) * measured / float(np.median(ratios))
    return Interval(measured, float(low), float(high))
