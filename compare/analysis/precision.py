"""`--until-ci METRIC=W%`: how precisely a cell knows a figure so far, and the rule that stops it once it knows.

The figure is the mean of a per-request latency (`ttft_ms`, `tpot_ms`, `e2e_ms`) or one of its percentiles
(`e2e_ms:p99`), over the completed requests in send order. Its 95% interval:
- the mean: Student's t over the requests, widened by sqrt((1 + r) / (1 - r)) for the lag-1 autocorrelation r of the
  series (r clipped to [0, 0.95]): neighbours in a closed loop share a batch, so they are not independent, and an
  interval that ignored it would stop the cell too soon (the AR(1) effective sample size);
- a percentile: the distribution-free order-statistic interval (ranks n q -/+ z sqrt(n q (1 - q)), widened by the
  same factor); it exists only once both ranks fall inside the sample.

The cell stops once the interval's half-width is under W% of the figure, with at least MIN_REQUESTS requests.
For independent requests with standard deviation s and mean m the mean's rule stops near
n = (z s / (W m))^2 requests (`required_requests`), the known answer the tests hold it to.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.results.records import RequestRecord
from engines.base import UsageError

Z95 = 1.959964
MIN_REQUESTS = 30  # no stop before: the spread itself is not known yet
MAX_AUTOCORRELATION = 0.95
METRICS = {
    "ttft_ms": lambda r: r.ttft_ms,
    "tpot_ms": lambda r: r.tpot_ms,
    "e2e_ms": lambda r: r.e2e_ms,
}
_RULE = re.compile(r"^(?P<metric>[a-z0-9_]+)(:p(?P<q>\d+(\.\d+)?))?=(?P<width>\d+(\.\d+)?)%$")


@dataclass(frozen=True)
class PrecisionRule:
    metric: str
    width: float  # the half-width's limit, a fraction of the figure
    percentile: float | None = None  # None: the mean

    @property
    def label(self) -> str:
        return f"{self.metric}{f':p{self.percentile:g}' if self.percentile is not None else ''}={self.width * 100:.3g}%"

    def values(self, records: list[RequestRecord]) -> np.ndarray:
        """The metric of every completed request, in send order."""
        done = sorted((r for r in records if r is not None and r.ok), key=lambda r: r.sent_ns)
        values = (METRICS[self.metric](r) for r in done)
        return np.asarray([v for v in values if v is not None], dtype=np.float64)

    def figure(self, values: np.ndarray) -> dict[str, Any] | None:
        """The figure, its interval's half-width (absolute and relative) and the series' autocorrelation; None
        before there are MIN_REQUESTS values or where the interval does not exist yet."""
        n = len(values)
        if n < MIN_REQUESTS:
            return None
        widen = math.sqrt((1 + (r := lag1_autocorrelation(values))) / (1 - r))
        if self.percentile is None:
            value = float(values.mean())
            half = t_quantile(n - 1) * float(values.std(ddof=1)) / math.sqrt(n) * widen
        else:
            bounds = percentile_bounds(np.sort(values), self.percentile / 100, widen)
            if bounds is None:
                return None
            value = float(np.percentile(values, self.percentile))
            half = (bounds[1] - bounds[0]) / 2
        relative = half / abs(value) if value else math.inf
        return {
            "value": value,
            "half_width": half,
            "relative_half_width": relative,
            "num_requests": n,
            "lag1_autocorrelation": r,
            "met": relative <= self.width,
        }


def parse_rule(text: str) -> PrecisionRule:
    """METRIC=W% or METRIC:pQ=W%, e.g. e2e_ms=5% or ttft_ms:p99=10% (a UsageError naming the fix else)."""
    match = _RULE.match(text.strip())
    if match is None or match["metric"] not in METRICS:
        raise UsageError(
            f"--until-ci {text!r}: give METRIC=W% or METRIC:pQ=W% with METRIC one of {', '.join(METRICS)} "
            "(e.g. e2e_ms=5%, ttft_ms:p99=10%)"
        )
    width, q = float(match["width"]), match["q"]
    if not 0 < width < 100 or (q is not None and not 0 < float(q) < 100):
        raise UsageError(f"--until-ci {text!r}: W must be between 0 and 100%, and Q between 0 and 100")
    return PrecisionRule(match["metric"], width / 100, None if q is None else float(q))


def lag1_autocorrelation(values: np.ndarray) -> float:
    """The series' lag-1 autocorrelation, clipped to [0, MAX_AUTOCORRELATION] (a negative one is not credited)."""
    centred = values - values.mean()
    denominator = float(centred @ centred)
    if denominator <= 0:
        return 0.0
    return min(max(float(centred[1:] @ centred[:-1]) / denominator, 0.0), MAX_AUTOCORRELATION)


def percentile_bounds(ordered: np.ndarray, q: float, widen: float = 1.0) -> tuple[float, float] | None:
    """The 95% order-statistic interval of the q-quantile of a sorted sample; None where a rank falls outside."""
    n = len(ordered)
    spread = Z95 * math.sqrt(n * q * (1 - q)) * widen
    low, high = math.floor(n * q - spread), math.ceil(n * q + spread)
    if low < 0 or high > n - 1:
        return None
    return float(ordered[low]), float(ordered[high])


def t_quantile(dof: int) -> float:
    """Student's t 97.5% quantile (Cornish-Fisher in 1/dof; within 0.1% from 10 degrees of freedom)."""
    z = Z95
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def required_requests(sd: float, mean: float, width: float) -> float:
    """Independent requests the mean's interval needs to reach half-width `width` (a fraction of the mean)."""
    return (Z95 * sd / (width * mean)) ** 2
