"""Metrics, all derived from the raw per-request records (compare/results/records.py) stored in the results file.

- TTFT = receipt of the first chunk that carries a token - send (open loop: - the scheduled send).
- ITL: a chunk carrying k tokens contributes k equal gaps of (its receipt - previous receipt) / k;
  extra tokens in the first chunk contribute gaps of 0. So a request has n - 1 ITL samples whose sum
  is t_last - t_first, and their mean is TPOT.
- TPOT = (t_last - t_first) / (n - 1), for requests with n >= 2 tokens.
- E2E = end of stream - send (open loop: - the scheduled send).
- Send lag (open loop) = actual send - scheduled send: how far the load generator fell behind.
- SSE events per read (HTTP mode) = the cell's SSE events over its reads of response bodies: how many
  events, on average, one read of the socket brought (they form one chunk, stamped once).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from compare.results.records import NS_PER_MS, RequestRecord

PERCENTILES = (50, 90, 95, 99)


def describe(values: Iterable[float]) -> dict[str, Any]:
    """count, mean, stdev (sample), min, max, p50/p90/p95/p99 (linear interpolation, as numpy/vLLM)."""
    data = np.asarray(list(values), dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    stats = {
        "count": int(data.size),
        "mean": float(data.mean()),
        "stdev": float(data.std(ddof=1)) if data.size > 1 else 0.0,
        "min": float(data.min()),
        "max": float(data.max()),
    }
    for pct, value in zip(PERCENTILES, np.percentile(data, PERCENTILES)):
        stats[f"p{pct}"] = float(value)
    return stats


def coefficient_of_variation(stats: dict[str, Any]) -> float | None:
    if stats.get("count", 0) < 2 or not stats["mean"]:
        return None
    return stats["stdev"] / stats["mean"]


def cell_wall_ns(records: list[RequestRecord]) -> int:
    """From the first send to the last end of stream, over every measured request."""
    ends = [r.finished_at_ns for r in records if r.end_ns is not None]
    if not ends:
        return 0
    return max(ends) - min(r.start_ns for r in records)


def summarize(records: list[RequestRecord]) -> dict[str, Any]:
    """The cell summary; throughput counts completed requests over the cell's wall time."""
    ok = [r for r in records if r.ok]
    wall_s = cell_wall_ns(records) / 1e9
    output_tokens = sum(r.output_tokens for r in ok)
    prompt_tokens = sum(r.prompt_tokens for r in ok)
    itl = np.concatenate([r.itl_ns() for r in ok] or [np.empty(0)])
    num_chunks = sum(r.num_chunks for r in ok)
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    return {
        "num_requests": len(records),
        "num_ok": len(ok),
        "num_failed": len(records) - len(ok),
        "wall_s": wall_s,
        "prompt_tokens_total": prompt_tokens,
        "output_tokens_total": output_tokens,
        "output_tokens": describe(r.output_tokens for r in ok),  # per request: its spread says where outputs end at EOS
        "output_tok_per_s": output_tokens / wall_s if wall_s else None,
        "total_tok_per_s": (prompt_tokens + output_tokens) / wall_s if wall_s else None,
        "request_per_s": len(ok) / wall_s if wall_s else None,
        "ttft_ms": describe(v for r in ok if (v := r.ttft_ms) is not None),
        "itl_ms": describe(itl / NS_PER_MS),
        "tpot_ms": describe(v for r in ok if (v := r.tpot_ms) is not None),
        "e2e_ms": describe(v for r in ok if (v := r.e2e_ms) is not None),
        "num_chunks": num_chunks,
        "tokens_per_chunk_mean": output_tokens / num_chunks if num_chunks else None,
        "cached_tokens_total": sum(cached) if cached else None,
        "requests_with_cached_tokens": sum(1 for c in cached if c > 0) if cached else None,
        **sse_reads_summary(ok),
        **spec_accept_summary(ok),
        **reasoning_summary(ok),
        **({"sequences_total": sum(r.num_sequences for r in ok)} if any(r.chunk_sequence for r in ok) else {}),
        "send_lag_ms": describe(r.send_lag_ns / NS_PER_MS for r in records if r.scheduled_ns is not None),
        "delivery_lag_ms": describe(
            r.engine["delivery_lag_ns"] / NS_PER_MS
            for r in ok
            if r.engine and r.engine.get("delivery_lag_ns") is not None
        ),
    }


def reasoning_summary(ok: list[RequestRecord]) -> dict[str, Any]:
    """Reasoning models (workloads/reasoning.py): time to the first answer token beside TTFT, and the reasoning
    tokens; `reasoning_unended` counts requests whose reasoning never ended (no answer within the output)."""
    ended = [r for r in ok if r.reasoning_tokens is not None]
    if not ended:
        return {}
    return {
        "ttfa_ms": describe(v for r in ended if (v := r.ttfa_ms) is not None),
        "reasoning_tokens": describe(r.reasoning_tokens for r in ended),
        "reasoning_unended": len(ok) - len(ended),
    }


def spec_accept_summary(ok: list[RequestRecord]) -> dict[str, Any]:
    """SGLang with speculative decoding: its per-request `spec_accept_length`; nothing where no engine reports it."""
    lengths = [
        r.engine["spec_accept_length"] for r in ok if r.engine and r.engine.get("spec_accept_length") is not None
    ]
    return {"spec_accept_length": describe(lengths)} if lengths else {}


def sse_reads_summary(ok: list[RequestRecord]) -> dict[str, Any]:
    """HTTP mode: SSE events and body reads over the cell, and their ratio; nothing for other engines."""
    counted = [r.engine for r in ok if r.engine and r.engine.get("sse_reads") is not None]
    if not counted:
        return {}
    events, reads = sum(e["sse_events"] for e in counted), sum(e["sse_reads"] for e in counted)
    return {
        "sse_events_total": events,
        "sse_reads_total": reads,
        "sse_events_per_read": events / reads if reads else None,
    }


def prefix_cache_summary(records: list[RequestRecord]) -> dict[str, Any] | None:
    """First request (cold cache) against the mean of the later ones (sharing its prefix)."""
    ok = [r for r in records if r.ok and r.chunk_ns]
    if len(ok) < 2:
        return None
    first, later = ok[0], ok[1:]

    def tok_per_s(r: RequestRecord) -> float:
        return r.output_tokens / (r.end_ns / 1e9)

    later_ttft = float(np.mean([r.ttft_ms for r in later]))
    return {
        "first_ttft_ms": first.ttft_ms,
        "later_ttft_ms_mean": later_ttft,
        "ttft_speedup": first.ttft_ms / later_ttft if later_ttft else None,
        "first_output_tok_per_s": tok_per_s(first),
        "later_output_tok_per_s_mean": float(np.mean([tok_per_s(r) for r in later])),
        "first_cached_tokens": first.cached_tokens,
        "later_cached_tokens_mean": _mean_or_none(r.cached_tokens for r in later),
        "total_time_s": cell_wall_ns(records) / 1e9,
    }


def language_summary(records: list[RequestRecord]) -> dict[str, Any] | None:
    """Tokens per character and characters per second, for the korean scenario's cells."""
    ok = [r for r in records if r.ok]
    if not ok or ok[0].prompt_chars is None:
        return None
    wall_s = cell_wall_ns(records) / 1e9
    prompt_chars = sum(r.prompt_chars for r in ok)
    output_chars = [r.output_chars for r in ok if r.output_chars is not None]
    output_tokens = sum(r.output_tokens for r in ok)
    return {
        "prompt_tokens_mean": float(np.mean([r.prompt_tokens for r in ok])),
        "prompt_chars_mean": prompt_chars / len(ok),
        "prompt_tokens_per_char": sum(r.prompt_tokens for r in ok) / prompt_chars if prompt_chars else None,
        "output_tokens_mean": output_tokens / len(ok),
        "output_chars_mean": float(np.mean(output_chars)) if output_chars else None,
        "output_tokens_per_char": output_tokens / sum(output_chars) if output_chars and sum(output_chars) else None,
        "output_chars_per_s": sum(output_chars) / wall_s if output_chars and wall_s else None,
    }


def _mean_or_none(values: Iterable[Any]) -> float | None:
    data = [v for v in values if v is not None]
    return float(np.mean(data)) if data else None
