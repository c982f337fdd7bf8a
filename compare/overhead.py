"""HTTP overhead: the same engine and args, the same requests, over its own server minus in-process.

`--mode both` runs engine `X` in-process and `X-http` through its launched server (compare/comparisons.py
pairs the two stored runs, or any two such files); per cell this gives
ΔTTFT and ΔITL at p50 and p99, Δoutput tok/s and Δreq/s (absolute and %), and, where the in-process
engine reports its first-token time, TTFT split into engine (queue + prefill), in-process delivery
and HTTP delivery (medians; the split is of p50s, so its parts need not add up per request).
"""

from __future__ import annotations

from typing import Any

_LATENCIES = (("ttft_ms", "p50"), ("ttft_ms", "p99"), ("itl_ms", "p50"), ("itl_ms", "p99"))
_RATES = ("output_tok_per_s", "request_per_s")


def cell_overhead(inproc: dict[str, Any], http: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric, stat in _LATENCIES:
        a, b = inproc[metric].get(stat), http[metric].get(stat)
        row[f"{metric}_{stat}"] = {"inprocess": a, "http": b, "delta": b - a if a is not None and b is not None else None}
    for metric in _RATES:
        a, b = inproc.get(metric), http.get(metric)
        delta = b - a if a is not None and b is not None else None
        row[metric] = {"inprocess": a, "http": b, "delta": delta, "delta_pct": 100 * delta / a if delta is not None and a else None}
    lag = inproc.get("delivery_lag_ms", {}).get("p50")
    ttft_in, ttft_http = inproc["ttft_ms"].get("p50"), http["ttft_ms"].get("p50")
    if lag is not None and ttft_in is not None and ttft_http is not None:
        row["ttft_split_ms_p50"] = {"engine": ttft_in - lag, "inprocess_delivery": lag, "http_delivery": ttft_http - ttft_in}
    return row


def http_overhead(inproc, http) -> dict[str, Any]:
    """Per cell of two stored runs (each with `.path` and `.doc`): the in-process one and its HTTP twin."""
    http_cells = {cell["cell_id"]: cell["summary"] for cell in http.doc["cells"]}
    return {
        "inprocess_engine": inproc.doc["engine"]["name"],
        "scenario": inproc.doc["scenario"]["name"],
        "inprocess_results": str(inproc.path),
        "http_results": str(http.path),
        "cells": {
            cell["cell_id"]: cell_overhead(cell["summary"], http_cells[cell["cell_id"]])
            for cell in inproc.doc["cells"]
            if cell["cell_id"] in http_cells
        },
    }


def overhead_lines(comparison: dict[str, Any]) -> list[str]:
    def fmt(value, digits=2):
        return "-" if value is None else f"{value:+.{digits}f}"

    lines = [f"HTTP overhead ({comparison['inprocess_engine']}-http minus {comparison['inprocess_engine']} in-process):"]
    for cell_id, row in comparison["cells"].items():
        text = (
            f"  {cell_id}: ΔTTFT p50 {fmt(row['ttft_ms_p50']['delta'])} ms, p99 {fmt(row['ttft_ms_p99']['delta'])} ms; "
            f"ΔITL p50 {fmt(row['itl_ms_p50']['delta'], 3)} ms, p99 {fmt(row['itl_ms_p99']['delta'], 3)} ms; "
            f"Δout tok/s {fmt(row['output_tok_per_s']['delta'], 1)} ({fmt(row['output_tok_per_s']['delta_pct'], 1)}%); "
            f"Δreq/s {fmt(row['request_per_s']['delta'], 3)} ({fmt(row['request_per_s']['delta_pct'], 1)}%)"
        )
        split = row.get("ttft_split_ms_p50")
        if split:
            text += (f"; TTFT p50 = engine {split['engine']:.2f} + in-process delivery {split['inprocess_delivery']:.2f}"
                     f" + HTTP delivery {split['http_delivery']:.2f} ms")  # fmt: skip
        lines.append(text)
    return lines
