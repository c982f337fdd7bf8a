"""The engine's own state during a cell, joined to the harness's per-token stamps.

Rows come from the engine: one per engine step (vLLM's stat logger) or one per poll (the others' queue
depth, SGLang's loads, an HTTP server's /metrics). Each row's `t_ns` is on the harness's clock, as an
offset from the cell's origin, like the records' send times. Derived per cell: mean and max running
requests (the batch), the share of the cell's time with requests waiting, the KV-cache usage peak, and
for step rows with prefill information, the ITL split by the step that delivered each token: steps that
also ran a prefill against decode-only steps (decode stalls caused by prefills).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.results.records import NS_PER_MS, RequestRecord


def prefill_in_step(row: dict[str, Any]) -> bool | None:
    if "prefill_tokens" in row:
        return row["prefill_tokens"] > 0
    if "prompt_tokens_done" in row:
        return row["prompt_tokens_done"] > 0
    return None


def itl_by_step_kind(rows: list[dict[str, Any]], records: list[RequestRecord]) -> dict[str, Any] | None:
    """Each chunk's gaps go to the step that delivered it: the last step row stamped at or before its receipt."""
    if not rows or prefill_in_step(rows[0]) is None:
        return None
    times = np.array([row["t_ns"] for row in rows], dtype=np.int64)
    flags = np.array([bool(prefill_in_step(row)) for row in rows])
    with_prefill, decode_only = [], []
    for record in records:
        if not record.ok or len(record.chunk_ns) < 2:
            continue
        gaps = record.itl_ns() / NS_PER_MS
        arrivals = record.sent_ns + np.asarray(record.chunk_ns, dtype=np.int64)
        steps = np.clip(np.searchsorted(times, arrivals, side="right") - 1, 0, len(rows) - 1)
        per_token_step = np.repeat(steps, record.chunk_tokens)[1:]  # gap i belongs to token i + 1
        for gap, step in zip(gaps, per_token_step):
            (with_prefill if flags[step] else decode_only).append(gap)

    def stats(values):
        return (
            {"count": len(values), "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}
            if values
            else {"count": 0}
        )

    return {"with_prefill_in_step": stats(with_prefill), "decode_only": stats(decode_only)}


def summarize_telemetry(rows: list[dict[str, Any]], records: list[RequestRecord], wall_ns: int) -> dict[str, Any]:
    if not rows:
        return {"num_rows": 0}
    running = [row["running"] for row in rows if "running" in row]
    waiting_time = 0
    for row, following in zip(rows, rows[1:]):
        if row.get("waiting", 0) > 0:
            waiting_time += following["t_ns"] - row["t_ns"]
    kv = [row["kv_cache_usage"] for row in rows if "kv_cache_usage" in row]
    summary: dict[str, Any] = {
        "num_rows": len(rows),
        "running_mean": float(np.mean(running)) if running else None,
        "running_max": int(max(running)) if running else None,
        "waiting_time_share": waiting_time / wall_ns if wall_ns and any("waiting" in r for r in rows) else None,
        "waiting_max": max((row.get("waiting", 0) for row in rows), default=None),
        "kv_cache_usage_peak": float(max(kv)) if kv else None,
        "itl_ms_by_step": itl_by_step_kind(rows, records),
    }
    preempted = [row.get("preempted", 0) for row in rows]
    summary["preemptions"] = int(sum(preempted))
    adapters = [row["running_adapters"] for row in rows if "running_adapters" in row]
    if adapters:  # multi-LoRA: distinct adapters among the running requests, per engine step
        summary["running_adapters_mean"], summary["running_adapters_max"] = float(np.mean(adapters)), int(max(adapters))
    return summary
