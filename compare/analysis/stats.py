"""Bootstrap confidence intervals over requests, seeded, and what counts as significant.

Requests are the unit of resampling: a statistic of per-request values (TTFT, E2E, TPOT, per-request
rates) resamples requests with replacement; per-token values (ITL) resample whole requests and pool
their tokens (a cluster bootstrap), because tokens of one request are not independent. A ratio of two
runs resamples each run on its own. Percentile intervals, 95% by default; every interval is seeded,
so a report made twice from the same files says the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SEED = 0
RESAMPLES = 2000
CLUSTER_RESAMPLES = 1000
LEVEL = 0.95

Statistic = Callable[[np.ndarray], np.ndarray]  # rows of resamples in, one value per row out


@dataclass(frozen=True)
class Interval:
    value: float  # the statistic on the data as measured
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def scaled(self, factor: float) -> Interval:
        return Interval(self.value * factor, self.low * factor, self.high * factor)


def percentile_stat(q: float) -> Statistic:
    return lambda rows: np.percentile(rows, q, axis=-1)


def mean_stat(rows: np.ndarray) -> np.ndarray:
    return rows.mean(axis=-1)


def _bounds(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def resampled(samples, statistic: Statistic, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The statistic on `resamples` resamples of `samples` (with replacement)."""
    data = np.asarray(samples, dtype=np.float64)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data.size, size=(resamples, data.size))
    return statistic(data[index])


def resampled_jointly(
    columns: list, statistic: Callable[..., np.ndarray], resamples: int = RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """Resample requests once and take the same rows of every column (e.g. tokens and E2E of one request)."""
    data = [np.asarray(c, dtype=np.float64) for c in columns]
    rng = np.random.default_rng(seed)
    index = rng.integers(0, data[0].size, size=(resamples, data[0].size))
    return statistic(*(column[index] for column in data))


def interval(samples, statistic: Statistic, level: float = LEVEL, seed: int = SEED) -> Interval | None:
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return None
    value = float(statistic(data[np.newaxis, :])[0])
    return Interval(value, *_bounds(resampled(data, statistic, seed=seed), level))


def clustered_percentile(
    groups: list[np.ndarray], q: float, resamples: int = CLUSTER_RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """The q-th percentile of pooled members (tokens) over resamples of whole groups (requests).

    A resample that picks request i k times holds its tokens k times, so the pooled percentile is a
    weighted one over the tokens sorted once: numpy's linear interpolation, at the positions where the
    cumulative weights reach it. The same as concatenating the picked groups, without building them."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    flat = np.concatenate(groups)
    owner = np.repeat(np.arange(len(groups)), [g.size for g in groups])
    order = np.argsort(flat, kind="stable")
    values, owner = flat[order], owner[order]
    rng = np.random.default_rng(seed)
    result = np.empty(resamples)
    for row in range(resamples):
        weights = np.bincount(rng.integers(0, len(groups), size=len(groups)), minlength=len(groups))[owner]
        cumulative = np.cumsum(weights)
        position = (cumulative[-1] - 1) * q / 100
        low, high = int(np.floor(position)), int(np.ceil(position))
        at = np.searchsorted(cumulative, [low, high], side="right")
        result[row] = values[at[0]] + (position - low) * (values[at[1]] - values[at[0]])
    return result


def clustered_interval(groups: list, q: float, level: float = LEVEL, seed: int = SEED) -> Interval | None:
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not groups:
        return None
    value = float(np.percentile(np.concatenate(groups), q))
    return Interval(value, *_bounds(clustered_percentile(groups, q, seed=seed), level))


def ratio_interval(
    a_values: np.ndarray, b_values: np.ndarray, a_value: float, b_value: float, level: float = LEVEL
) -> Interval:
    """b / a, with the interval from two independent sets of resampled statistics."""
    ratios = np.asarray(b_values) / np.asarray(a_values)
    return Interval(b_value / a_value, *_bounds(ratios[np.isfinite(ratios)], level))


def difference_interval(ours, base, q: float = 50, level: float = LEVEL) -> dict | None:
    """ours - base at percentile q of two independent samples, with the interval from their independent
    resamples, and whether it excludes zero (None with fewer than 2 values on a side)."""
    ours, base = np.asarray(ours, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if ours.size < 2 or base.size < 2:
        return None
    diffs = resampled(ours, percentile_stat(q), seed=SEED) - resampled(base, percentile_stat(q), seed=SEED + 1)
    low, high = _bounds(diffs, level)
    value = float(np.percentile(ours, q) - np.percentile(base, q))
    return {"value": value, "low": low, "high": high, "significant": not low <= 0 <= high}


def slope_with_error(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """The least-squares slope of y on x and its standard error; None with fewer than 3 points or x constant."""
    centred = x - x.mean()
    spread = float(centred @ centred)
    if len(x) < 3 or spread <= 0:
        return None
    slope = float(centred @ (y - y.mean())) / spread
    residual = y - y.mean() - slope * centred
    return slope, float(np.sqrt(float(residual @ residual) / (len(x) - 2) / spread))


def judge(ci: Interval, threshold: float, higher_supports: bool = True) -> str:
    """A claim 'effect beyond threshold': supported when the whole interval is beyond it, not supported when the
    whole interval is short of it, inconclusive when the interval crosses it."""
    beyond = ci.low > threshold if higher_supports else ci.high < threshold
    short = ci.high < threshold if higher_supports else ci.low > threshold
    return "supported" if beyond else "not supported" if short else "inconclusive"
