"""Token-length distributions for `input_tokens` and `output_tokens`: data in the scenario, drawn seeded.

In a scenario JSON a length is an int (fixed) or an object:
- `{"dist": "uniform", "mean": 512, "range_ratio": 0.5}`: integers uniform on [mean (1 - r), mean (1 + r)]
  (vLLM's `random` dataset convention);
- `{"dist": "lognormal", "mean": 512, "sigma": 0.6}`: lognormal with that mean (mu = ln mean - sigma^2 / 2),
  rounded;
- `{"dist": "histogram", "values": [64, 256, 1024], "weights": [0.2, 0.5, 0.3]}`: an empirical histogram.
Every draw is clipped to [min, max] (`min` default 1; `max` optional), so every prompt can still hit its
own target exactly. `label` names the distribution in cell ids (in512, in512u0.5, in512ln0.6, inhist).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import UsageError

KINDS = ("fixed", "uniform", "lognormal", "histogram")


@dataclass(frozen=True)
class LengthDist:
    dist: str = "fixed"
    mean: int = 0
    range_ratio: float = 0.0
    sigma: float = 0.0
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    min: int = 1
    max: int = 0  # 0: no upper clip

    @property
    def is_fixed(self) -> bool:
        return self.dist == "fixed"

    @property
    def label(self) -> str:
        return {
            "fixed": f"{self.mean}",
            "uniform": f"{self.mean}u{self.range_ratio:g}",
            "lognormal": f"{self.mean}ln{self.sigma:g}",
            "histogram": "hist",
        }[self.dist]

    @property
    def upper_bound(self) -> int:
        """The longest length a draw can give (what a context check must allow)."""
        if self.max:
            return self.max
        if self.dist == "uniform":
            return math.floor(self.mean * (1 + self.range_ratio))
        if self.dist == "histogram":
            return max(self.values)
        if self.dist == "lognormal":  # unbounded: the 99.99th percentile, where no max clips it
            mu = math.log(self.mean) - self.sigma**2 / 2
            return math.ceil(math.exp(mu + 3.72 * self.sigma))
        return self.mean

    def draw(self, count: int, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        if self.dist == "fixed":
            raw = np.full(count, self.mean)
        elif self.dist == "uniform":
            low, high = math.ceil(self.mean * (1 - self.range_ratio)), math.floor(self.mean * (1 + self.range_ratio))
            raw = rng.integers(low, high + 1, size=count)
        elif self.dist == "lognormal":
            raw = np.rint(rng.lognormal(math.log(self.mean) - self.sigma**2 / 2, self.sigma, size=count))
        else:
            probabilities = np.asarray(self.weights, dtype=float) / sum(self.weights)
            raw = rng.choice(np.asarray(self.values), size=count, p=probabilities)
        return [int(v) for v in np.clip(raw, self.min, self.max or None)]

    def to_json(self) -> int | dict[str, Any]:
        if self.is_fixed:
            return self.mean
        keep = {"uniform": ("mean", "range_ratio"), "lognormal": ("mean", "sigma"), "histogram": ("values", "weights")}
        data = {
            "dist": self.dist,
            **{k: list(v) if isinstance(v, tuple) else v for k in keep[self.dist] for v in [getattr(self, k)]},
        }
        return {**data, **({"min": self.min} if self.min != 1 else {}), **({"max": self.max} if self.max else {})}


def parse_length(value: Any, field: str) -> LengthDist:
    """An int, or a distribution object; anything else is a one-line UsageError naming the field."""
    if isinstance(value, LengthDist):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UsageError(f"'{field}' must be >= 1")
        return LengthDist("fixed", value)
    if not isinstance(value, dict) or value.get("dist") not in KINDS:
        raise UsageError(f"'{field}' must be an int or {{\"dist\": one of {', '.join(KINDS)}, ...}}")
    known = {"dist", "mean", "range_ratio", "sigma", "values", "weights", "min", "max"}
    if set(value) - known:
        raise UsageError(f"'{field}': unknown key {sorted(set(value) - known)[0]!r}; valid: {', '.join(sorted(known))}")
    try:
        dist = LengthDist(
            value["dist"],
            int(value.get("mean", 0)),
            float(value.get("range_ratio", 0.0)),
            float(value.get("sigma", 0.0)),
            tuple(int(v) for v in value.get("values", ())),
            tuple(float(w) for w in value.get("weights", ())),
            int(value.get("min", 1)),
            int(value.get("max", 0)),
        )
    except (TypeError, ValueError):
        raise UsageError(f"'{field}': numbers expected in {value}") from None
    _check(dist, field)
    return dist


def _check(dist: LengthDist, field: str) -> None:
    def fail(message: str):
        raise UsageError(f"'{field}' ({dist.dist}): {message}")

    if dist.min < 1 or (dist.max and dist.max < dist.min):
        fail("'min' must be >= 1 and 'max' (if set) >= min")
    if dist.dist in ("fixed", "uniform", "lognormal") and dist.mean < 1:
        fail("needs 'mean' >= 1")
    if dist.dist == "uniform" and not 0 <= dist.range_ratio < 1:
        fail("'range_ratio' must be in [0, 1)")
    if dist.dist == "lognormal" and not dist.sigma > 0:
        fail("'sigma' must be > 0")
    if dist.dist == "histogram":
        if not dist.values or len(dist.values) != len(dist.weights) or min(dist.values) < 1:
            fail("needs 'values' (each >= 1) and as many 'weights'")
        if min(dist.weights) < 0 or not sum(dist.weights) > 0:
            fail("'weights' must be >= 0 with a positive sum")
