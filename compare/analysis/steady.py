"""A cell's steady window: its warm-up and drain cut off, from its own records (docs/measurements.md).

- **Warm-up**: the requests' E2E latencies in send order, on a log scale; the least-squares change point in the
  first half (the cut whose two means explain the most of the spread, the head the slower), kept only where fewer
  than 1% of 199 shuffles of the same series have a step that explains as much, and where the head is at least 2%
  slower. MSER-5 (White 1997, the MLCommons steady-state note) was
  the first rule tried: it cut up to 27 requests past a programmed 20-request warm-up and hit its bound on 15 of 100
  stationary 40-request series, so it is not used.
- **No steady state**: the later half of what follows the warm-up still rises (a least-squares slope over TREND_T
  standard errors that adds over 25% to the latency), as an open-loop cell above capacity does; or fewer than
  MIN_STEADY_REQUESTS requests run wholly inside the window.
- **Drain**, from the in-flight count: after the last send no request replaces a finished one, so the batch only
  shrinks; the window ends at the last send.

The window's figures: output tokens received inside it over its length (every chunk's receipt is stamped), requests
ended inside it, and the latencies of the requests that ran wholly inside it."""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.analysis.metrics import describe
from compare.analysis.stats import SEED, slope_with_error
from compare.results.records import NS_PER_MS, RequestRecord

MIN_STEADY_REQUESTS = 10
MIN_WARMUP = 2  # a warm-up is at least this many requests
PERMUTATIONS = 199
TREND_T = 4.0  # no steady state: the later half of the cell still rises by this many standard errors
MIN_TREND_RISE = 0.25  # and by this much of its latency, start to end
WARMUP_P = 0.01
MIN_WARMUP_EFFECT = 0.02  # a head slower than the rest by less than this is not called a warm-up, however sure
RULE = (
    f"warm-up: log E2E latency in send order, the least-squares change point in the first half (head slower), kept at "
    f"permutation p < {WARMUP_P:g} and >= {MIN_WARMUP_EFFECT:.0%} slower; no steady state: the later half rises "
    f"(slope > {TREND_T:g} SE, > {MIN_TREND_RISE:.0%}); drain: after the last send; at least {MIN_STEADY_REQUESTS} "
    "requests inside"
)


def step_gain(series: np.ndarray) -> np.ndarray:
    """For every cut d in [MIN_WARMUP, n/2]: how much of the series' sum of squares a step there explains,
    d (n - d) / n x (head mean - rest mean)^2, where the head is the slower (0 where it is not). Its largest is the
    least-squares change point. Index i is the cut MIN_WARMUP + i."""
    n = len(series)
    cuts = np.arange(MIN_WARMUP, n // 2 + 1)
    total = np.cumsum(series)
    difference = total[cuts - 1] / cuts - (total[-1] - total[cuts - 1]) / (n - cuts)
    return np.where(difference > 0, cuts * (n - cuts) / n * difference**2, 0.0)


def trends_up(series: np.ndarray) -> bool:
    """A least-squares slope over the series that is positive by more than TREND_T standard errors and raises the
    latency by more than MIN_TREND_RISE from its start to its end (a host that slows a little mid-cell is not an
    overload)."""
    n = len(series)
    if n < 4:
        return False
    slope, error = slope_with_error(np.arange(n, dtype=np.float64), series)
    rise = slope * (n - 1)  # over the series, in log latency: a ratio of end to start
    return slope > TREND_T * max(error, 1e-12) and rise > np.log1p(MIN_TREND_RISE)


def warmup_requests(latencies_ms: list[float], seed: int = SEED) -> tuple[int, bool]:
    """(requests of warm-up, whether the series never settles) for latencies in send order: the warm-up is the
    least-squares change point, kept where a permutation test (the same scan on shuffled series) says a step would
    explain that much by chance less than WARMUP_P of the time; the series never settles where the later half of
    what follows the warm-up still rises."""
    series = np.log(np.maximum(np.asarray(latencies_ms, dtype=np.float64), 1e-9))
    if len(series) < 2 * MIN_WARMUP + 2:
        return 0, False
    scan = step_gain(series)
    observed, cut = float(scan.max()), MIN_WARMUP + int(scan.argmax())
    rng = np.random.default_rng(seed)
    exceed = sum(float(step_gain(rng.permutation(series)).max()) >= observed for _ in range(PERMUTATIONS))
    effect = float(np.mean(series[:cut]) - np.mean(series[cut:]))  # log ratio of the two parts' geometric means
    if (1 + exceed) / (1 + PERMUTATIONS) >= WARMUP_P or effect < np.log1p(MIN_WARMUP_EFFECT):
        cut = 0
    rest = series[cut:]
    return cut, bool(trends_up(rest[len(rest) // 2 :]))


def ran_inside(records: list[RequestRecord], start_ns: float, end_ns: float) -> list[RequestRecord]:
    """The completed requests with tokens that were sent at or after `start_ns` and ended by `end_ns`."""
    return [
        r
        for r in records
        if r.ok and r.chunk_ns and r.end_ns is not None and r.sent_ns >= start_ns and r.finished_at_ns <= end_ns
    ]


def steady_window(records: list[RequestRecord]) -> dict[str, Any]:
    """The cell's steady window and its figures, or "no steady state" with why."""
    ok = sorted((r for r in records if r.ok and r.end_ns is not None and r.chunk_ns), key=lambda r: r.sent_ns)
    if len(ok) < MIN_STEADY_REQUESTS:
        return {"rule": RULE, "verdict": "no steady state", "why": f"{len(ok)} requests: too few to tell"}
    cut, unsettled = warmup_requests([r.e2e_ms for r in ok])
    if unsettled:
        why = f"latency still rises through the later half of the cell ({len(ok)} requests, warm-up {cut})"
        return {"rule": RULE, "verdict": "no steady state", "why": why, "warmup_requests": cut}
    start_ns, end_ns = ok[cut].sent_ns, max(r.sent_ns for r in ok)
    inside = ran_inside(ok, start_ns, end_ns)
    if len(inside) < MIN_STEADY_REQUESTS or end_ns <= start_ns:
        why = f"{len(inside)} requests ran wholly between the warm-up's end and the last send"
        return {"rule": RULE, "verdict": "no steady state", "why": why, "warmup_requests": cut}
    seconds = (end_ns - start_ns) / 1e9
    tokens = sum(n for r in ok for t, n in zip(r.chunk_ns, r.chunk_tokens) if start_ns <= r.sent_ns + t <= end_ns)
    ended = sum(1 for r in ok if start_ns <= r.finished_at_ns <= end_ns)
    return {
        "rule": RULE,
        "verdict": "steady",
        "warmup_requests": cut,
        "window_ms": [start_ns / NS_PER_MS, end_ns / NS_PER_MS],
        "num_requests": len(inside),
        "output_tok_per_s": tokens / seconds,
        "request_per_s": ended / seconds,
        "ttft_ms": describe(r.ttft_ms for r in inside),
        "tpot_ms": describe(r.tpot_ms for r in inside if r.tpot_ms is not None),
        "e2e_ms": describe(r.e2e_ms for r in inside),
    }


def steady_view(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The cell as its steady window sees it: the requests that ran wholly inside, the window's throughput as its
    summary's; None where the cell has no steady state."""
    steady = cell.get("steady") or {}
    if steady.get("verdict") != "steady":
        return None
    start_ns, end_ns = (ms * NS_PER_MS for ms in steady["window_ms"])
    inside = ran_inside(cell["requests"], start_ns, end_ns)
    summary = {**cell["summary"], "output_tok_per_s": steady["output_tok_per_s"]}
    return {**cell, "requests": inside, "summary": summary}


def steady_views(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The cells as their steady windows see them where every one has a steady state, else as they are (a comparison
    reads like with like); and whether the windows were used."""
    views = [steady_view(cell) for cell in cells]
    return (views, True) if all(view is not None for view in views) else (list(cells), False)


def steady_line(cell_id: str, steady: dict[str, Any], whole: dict[str, Any]) -> str:
    """One line beside the whole-cell figures."""
    if steady["verdict"] != "steady":
        return f"{cell_id}: no steady state ({steady['why']})"
    start, end = steady["window_ms"]
    change = steady["output_tok_per_s"] / whole["output_tok_per_s"] - 1 if whole.get("output_tok_per_s") else None
    p99, whole_p99 = steady["e2e_ms"].get("p99"), (whole.get("e2e_ms") or {}).get("p99")
    return (
        f"{cell_id}: steady {start:.0f}-{end:.0f} ms, {steady['num_requests']} requests (warm-up "
        f"{steady['warmup_requests']}): {steady['output_tok_per_s']:.1f} tok/s"
        + (f" ({change:+.1%} vs whole cell)" if change is not None else "")
        + (f", E2E p99 {p99:.1f} ms (whole {whole_p99:.1f})" if p99 is not None and whole_p99 is not None else "")
    )
