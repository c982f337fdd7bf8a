"""One cell's figures with their dispersion: every latency percentile with a bootstrap interval over
requests, throughput with an interval from the per-request times, and the GPU figures as sampled.

Throughput's interval uses Little's law for a closed loop at concurrency c: output tok/s is about
c x (sum of output tokens) / (sum of E2E). Resampling requests gives that estimate's spread, which is
applied, as a relative band, to the cell's measured throughput (first send -> last end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.analysis.stats import (
    Interval,
    clustered_interval,
    clustered_percentile,
    interval,
    mean_stat,
    percentile_stat,
    resampled,
    resampled_jointly,
)
from compare.results.records import NS_PER_MS, RequestRecord

LATENCY_ROWS = (
    ("TTFT", "ttft", (50, 95, 99)),
    ("ITL", "itl", (50, 99)),
    ("TPOT", "tpot", (50,)),
    ("E2E", "e2e", (50, 95, 99)),
)


@dataclass
class Figure:
    """A figure of a cell: its value, and where it has one, its 95% interval."""

    value: float | None
    ci: Interval | None = None


def ok_records(cell: dict[str, Any]) -> list[RequestRecord]:
    return [r for r in cell["requests"] if r.ok]


def per_request(records: list[RequestRecord], what: str) -> np.ndarray:
    values = {
        "ttft": lambda r: r.ttft_ms,
        "ttfa": lambda r: r.ttfa_ms,
        "tpot": lambda r: r.tpot_ms,
        "e2e": lambda r: r.e2e_ms,
        "rate": lambda r: r.output_tokens / (r.end_ns / 1e9) if r.end_ns else None,
    }[what]
    return np.array([v for r in records if (v := values(r)) is not None], dtype=np.float64)


def itl_groups(records: list[RequestRecord]) -> list[np.ndarray]:
    return [r.itl_ns() / NS_PER_MS for r in records]


def latency(records: list[RequestRecord], what: str, q: float) -> Figure:
    if what == "itl":
        ci = clustered_interval(itl_groups(records), q)
    else:
        ci = interval(per_request(records, what), percentile_stat(q))
    return Figure(ci.value if ci else None, ci)


def latency_resamples(records: list[RequestRecord], what: str, q: float, seed: int) -> tuple[float, np.ndarray]:
    """The measured percentile and its bootstrap resamples (for ratios of two runs)."""
    if what == "itl":
        groups = [g for g in itl_groups(records) if g.size]
        return float(np.percentile(np.concatenate(groups), q)), clustered_percentile(groups, q, seed=seed)
    values = per_request(records, what)
    return float(np.percentile(values, q)), resampled(values, percentile_stat(q), seed=seed)


def throughput_resamples(records: list[RequestRecord], concurrency: int, seed: int, unit: str = "tokens") -> np.ndarray:
    """Little's-law estimates of output tok/s (or req/s) over resampled requests."""
    tokens = np.array([r.output_tokens if unit == "tokens" else 1 for r in records], dtype=np.float64)
    e2e_s = np.array([r.end_ns / 1e9 for r in records], dtype=np.float64)
    return resampled_jointly([tokens, e2e_s], lambda t, e: concurrency * t.sum(axis=-1) / e.sum(axis=-1), seed=seed)


def throughput(cell: dict[str, Any], unit: str = "tokens") -> Figure:
    measured = cell["summary"]["output_tok_per_s" if unit == "tokens" else "request_per_s"]
    records = [r for r in ok_records(cell) if r.end_ns and r.timing == "stream"]
    if measured is None or len(records) < 2:
        return Figure(measured)
    concurrency = cell["config"]["concurrency"]
    estimates = throughput_resamples(records, concurrency, seed=0, unit=unit)
    tokens = sum(r.output_tokens if unit == "tokens" else 1 for r in records)
    point = concurrency * tokens / sum(r.end_ns / 1e9 for r in records)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Figure(measured, Interval(measured, measured * low / point, measured * high / point))


def gpu(cell: dict[str, Any]) -> dict[str, Figure]:
    per_gpu = (cell.get("gpu") or {}).get("per_gpu") or []
    if not per_gpu:
        return {}
    return {
        "GPU MiB peak": Figure(max(g["memory_used_mib_peak"] for g in per_gpu)),
        "GPU MiB mean": Figure(sum(g["memory_used_mib_mean"] for g in per_gpu)),
        "GPU util % mean": Figure(float(np.mean([g["utilization_pct_mean"] for g in per_gpu]))),
    }


def joules_per_token(energy: dict[str, Any] | None) -> dict[str, float]:
    """J per output token from each energy counter that counted over the measured part ("gpu" first, then "cpu";
    compare/run/instruments/energy.py); absent where a counter was unavailable."""
    per_token = {}
    for source in ("gpu", "cpu"):
        counted = (energy or {}).get(source) or {}
        if counted.get("available") and counted.get("j_per_output_token") is not None:
            per_token[source] = counted["j_per_output_token"]
    return per_token


def energy(cell: dict[str, Any]) -> dict[str, Figure]:
    return {
        f"{source.upper()} J/token": Figure(value) for source, value in joules_per_token(cell.get("energy")).items()
    }


def cell_figures(cell: dict[str, Any]) -> dict[str, Figure]:
    """Every row of the side-by-side tables for one cell."""
    records = ok_records(cell)
    rows: dict[str, Figure] = {}
    for label, what, percentiles in LATENCY_ROWS:
        for q in percentiles:
            rows[f"{label} p{q}"] = latency(records, what, q) if records else Figure(None)
    if any(r.first_answer_ns is not None for r in records):  # reasoning: the first answer token beside the first token
        rows["TTFA p50"], rows["TTFA p99"] = latency(records, "ttfa", 50), latency(records, "ttfa", 99)
    rows["output tok/s"] = throughput(cell, "tokens")
    rows["req/s"] = throughput(cell, "requests")
    rows.update(gpu(cell))
    rows.update(energy(cell))
    return rows


def mean_interval(values) -> Interval | None:
    return interval(values, mean_stat)
