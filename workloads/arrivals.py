"""Open-loop arrival schedules: when each request is due, fixed before anything runs and seeded.

Gaps between requests follow a gamma distribution with shape `burstiness` and mean 1/rate, as
`vllm bench serve` draws them: burstiness 1 is a Poisson process (exponential gaps, coefficient of
variation 1), below 1 burstier (CV = 1/sqrt(burstiness)), above 1 more regular. Rate `inf` sends
everything at once. The first request is due at 0.
"""

from __future__ import annotations

import math

import numpy as np

from engines.base import UsageError

INFINITE = math.inf


def parse_rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise UsageError(f"request rate {text!r} must be > 0 (req/s) or inf")
    return value


def rate_label(rate: float) -> str:
    """The rate as a cell id part: r2, r0.5, rinf."""
    return "rinf" if math.isinf(rate) else f"r{rate:g}"


def arrival_offsets_ns(num_requests: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[int]:
    """Due times of `num_requests` requests, in ns after the cell's start."""
    if burstiness <= 0:
        raise UsageError(f"burstiness {burstiness:g} must be > 0 (1 = Poisson)")
    if math.isinf(rate) or num_requests == 0:
        return [0] * num_requests
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=num_requests - 1)
    return [0] + [int(t) for t in np.cumsum(gaps) * 1e9]
