"""SLO goodput: the share of requests that meet every latency limit, and the throughput they make.

`--slo ttft_ms=200,tpot_ms=50,e2e_ms=5000`, or a named preset: `preset=mlperf-llama3-8b` (MLPerf
Inference's Llama-3.1-8B server scenario: TTFT <= 2 s, TPOT <= 100 ms) or `mlperf-llama3-8b-interactive`
(TTFT <= 0.5 s, TPOT <= 30 ms). Limits are checked per request, on its own TTFT (from its scheduled
send in open loop), TPOT and E2E; a failed request meets none.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from compare.results.records import RequestRecord
from engines.base import UsageError

LIMITS = ("ttft_ms", "tpot_ms", "e2e_ms")
PRESETS = {
    "mlperf-llama3-8b": {"ttft_ms": 2000.0, "tpot_ms": 100.0},
    "mlperf-llama3-8b-interactive": {"ttft_ms": 500.0, "tpot_ms": 30.0},
}


def parse_slo(text: str) -> dict[str, float]:
    limits: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if key == "preset":
            if value not in PRESETS:
                raise UsageError(f"--slo preset {value!r} is unknown; valid: {', '.join(PRESETS)}")
            limits.update(PRESETS[value])
            continue
        if not sep or key not in LIMITS:
            raise UsageError(f"--slo {part!r}: give {', '.join(f'{k}=MS' for k in LIMITS)} or preset=NAME")
        try:
            limits[key] = float(value)
        except ValueError:
            raise UsageError(f"--slo {part!r}: {value!r} is not a number of milliseconds") from None
    if not limits:
        raise UsageError("--slo needs at least one limit, e.g. ttft_ms=200,tpot_ms=50 or preset=mlperf-llama3-8b")
    return limits


def missed(record: RequestRecord, limits: dict[str, float]) -> list[str]:
    """The limits this request misses (all of them when it failed or has no value to check)."""
    if not record.ok:
        return list(limits)
    values = {"ttft_ms": record.ttft_ms, "tpot_ms": record.tpot_ms, "e2e_ms": record.e2e_ms}
    misses = []
    for key, limit in limits.items():
        value = values[key]
        if value is None:
            if key != "tpot_ms":  # no token at all; a one-token output has no TPOT to miss
                misses.append(key)
        elif value > limit:
            misses.append(key)
    return misses


def goodput(records: list[RequestRecord], limits: dict[str, float], wall_s: float) -> dict[str, Any]:
    misses = Counter()
    good = []
    for record in records:
        failed_limits = missed(record, limits)
        misses.update(failed_limits)
        if not failed_limits:
            good.append(record)
    return {
        "limits": limits,
        "num_requests": len(records),
        "num_met": len(good),
        "share_met": len(good) / len(records) if records else None,
        "goodput_request_per_s": len(good) / wall_s if wall_s else None,
        "goodput_output_tok_per_s": sum(r.output_tokens for r in good) / wall_s if wall_s else None,
        "misses_by_limit": dict(misses),
        "most_missed": misses.most_common(1)[0][0] if misses else None,
    }
