"""Pairs of stored runs that differ only in how the engine was driven, and what each pair measures.

A run records what it is a variant of (`variant` in the results file): the base engine, the kind
(inprocess, http, batch) and the base engine's given args. Two runs pair when they ran the same
scenario on the same model and hardware with the same `--quick`, of the same base engine and args.
Any stored files pair, from one command or from several; where several in-process runs fit, the one with
measured requests, run closest in time, is taken; a run where every request failed pairs with nothing.

- (inprocess, http): the HTTP overhead. `--mode both` runs engine `X` in-process and `X-http` through its
  launched server; per cell ΔTTFT and ΔITL at p50 and p99, Δoutput tok/s and Δreq/s (absolute and %),
  and, where the in-process engine reports its first-token time, TTFT split into engine (queue +
  prefill), in-process delivery and HTTP delivery (medians; the split is of p50s, so its parts need not
  add up per request).
- (inprocess, batch): the streaming fidelity. An engine named `X-batch` (capability `offline_batch`) is
  the twin of `X`; both ran the same planned requests, so the ratio of output tok/s prices streaming
  itself (per-request output handling, detokenisation and delivery) against the engine's best offline
  throughput.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Protocol


class Run(Protocol):
    path: Any
    doc: dict[str, Any]


def pair_key(doc: dict[str, Any]) -> tuple:
    variant = doc["variant"]
    args = variant.get("engine_args")
    return (
        doc["scenario"]["name"],
        doc["model"].get("spec"),
        bool(doc.get("quick")),
        _hardware(doc),
        variant["of"],
        None if args is None else json.dumps(args, sort_keys=True),
    )


def _hardware(doc: dict[str, Any]) -> str:
    gpus = (doc.get("metadata") or {}).get("gpus") or {}
    if gpus.get("available"):
        return ",".join(d["name"] for d in gpus.get("devices", []))
    return str(((doc.get("metadata") or {}).get("cpu") or {}).get("model"))


def _usable(run) -> bool:
    return any(r.ok for cell in run.doc["cells"] for r in cell["requests"])


def paired_runs(runs: Iterable[Run]) -> list[tuple[Run, Run, str]]:
    """(in-process run, variant run, variant kind) for every pair; a v1 file (args unknown) pairs on the rest."""
    runs = list(runs)
    base = {}
    for run in runs:
        if run.doc["variant"]["kind"] == "inprocess":
            base.setdefault(_loose(pair_key(run.doc)), []).append(run)
    pairs = []
    for run in runs:
        kind = run.doc["variant"]["kind"]
        if kind == "inprocess":
            continue
        key = pair_key(run.doc)
        matching = [
            c
            for c in base.get(_loose(key), [])
            if (key[-1] is None or pair_key(c.doc)[-1] in (None, key[-1])) and _usable(c)
        ]
        if matching and _usable(run):  # both measured something; of several bases, the one run closest in time
            when = run.doc.get("metadata", {}).get("date_utc", "")
            pairs.append((min(matching, key=lambda c: _distance(c, when)), run, kind))
    return pairs


def _distance(run, when: str) -> float:
    from datetime import datetime

    try:
        return abs(
            (datetime.fromisoformat(run.doc["metadata"]["date_utc"]) - datetime.fromisoformat(when)).total_seconds()
        )
    except (KeyError, ValueError, TypeError):
        return float("inf")


def _loose(key: tuple) -> tuple:
    return key[:-1]


# HTTP overhead

_LATENCIES = (("ttft_ms", "p50"), ("ttft_ms", "p99"), ("itl_ms", "p50"), ("itl_ms", "p99"))
_RATES = ("output_tok_per_s", "request_per_s")


def cell_overhead(inproc: dict[str, Any], http: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric, stat in _LATENCIES:
        a, b = inproc[metric].get(stat), http[metric].get(stat)
        row[f"{metric}_{stat}"] = {
            "inprocess": a,
            "http": b,
            "delta": b - a if a is not None and b is not None else None,
        }
    for metric in _RATES:
        a, b = inproc.get(metric), http.get(metric)
        delta = b - a if a is not None and b is not None else None
        row[metric] = {
            "inprocess": a,
            "http": b,
            "delta": delta,
            "delta_pct": 100 * delta / a if delta is not None and a else None,
        }
    lag = inproc.get("delivery_lag_ms", {}).get("p50")
    ttft_in, ttft_http = inproc["ttft_ms"].get("p50"), http["ttft_ms"].get("p50")
    if lag is not None and ttft_in is not None and ttft_http is not None:
        row["ttft_split_ms_p50"] = {
            "engine": ttft_in - lag,
            "inprocess_delivery": lag,
            "http_delivery": ttft_http - ttft_in,
        }
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

    lines = [
        f"HTTP overhead ({comparison['inprocess_engine']}-http minus {comparison['inprocess_engine']} in-process):"
    ]
    for cell_id, row in comparison["cells"].items():
        text = (
            f"  {cell_id}: ΔTTFT p50 {fmt(row['ttft_ms_p50']['delta'])} ms, p99 {fmt(row['ttft_ms_p99']['delta'])} ms; "
            f"ΔITL p50 {fmt(row['itl_ms_p50']['delta'], 3)} ms, p99 {fmt(row['itl_ms_p99']['delta'], 3)} ms; "
            f"Δout tok/s {fmt(row['output_tok_per_s']['delta'], 1)} ({fmt(row['output_tok_per_s']['delta_pct'], 1)}%); "
            f"Δreq/s {fmt(row['request_per_s']['delta'], 3)} ({fmt(row['request_per_s']['delta_pct'], 1)}%)"
        )
        split = row.get("ttft_split_ms_p50")
        if split:
            text += (
                f"; TTFT p50 = engine {split['engine']:.2f} + in-process delivery {split['inprocess_delivery']:.2f}"
                f" + HTTP delivery {split['http_delivery']:.2f} ms"
            )
        lines.append(text)
    return lines


# Streaming fidelity


def streaming_fidelity(streaming, batch) -> dict[str, Any]:
    """Per cell of two stored runs (each with `.path` and `.doc`): the streaming one and its batch twin."""
    batch_cells = {cell["cell_id"]: cell["summary"] for cell in batch.doc["cells"]}
    cells = {}
    for cell in streaming.doc["cells"]:
        stream_rate = cell["summary"]["output_tok_per_s"]
        batch_rate = (batch_cells.get(cell["cell_id"]) or {}).get("output_tok_per_s")
        cells[cell["cell_id"]] = {
            "streaming_output_tok_per_s": stream_rate,
            "batch_output_tok_per_s": batch_rate,
            "ratio": stream_rate / batch_rate if stream_rate and batch_rate else None,
        }
    return {
        "streaming_engine": streaming.doc["engine"]["name"],
        "batch_engine": batch.doc["engine"]["name"],
        "streaming_results": str(streaming.path),
        "batch_results": str(batch.path),
        "cells": cells,
    }


def fidelity_lines(comparison: dict[str, Any]) -> list[str]:
    lines = [f"streaming fidelity ({comparison['streaming_engine']} / {comparison['batch_engine']} output tok/s):"]
    for cell_id, row in comparison["cells"].items():
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        stream = f"{row['streaming_output_tok_per_s']:.1f}" if row["streaming_output_tok_per_s"] else "-"
        batch = f"{row['batch_output_tok_per_s']:.1f}" if row["batch_output_tok_per_s"] else "-"
        lines.append(f"  {cell_id}: {stream} / {batch} = {ratio}")
    return lines


BUILDERS = {"http": ("http_overhead", http_overhead), "batch": ("streaming_fidelity", streaming_fidelity)}


def compare_pairs(runs: Iterable[Run]) -> list[tuple[str, dict[str, Any]]]:
    """(comparison name, comparison) for every pair found."""
    found = []
    for base, variant, kind in paired_runs(runs):
        name, build = BUILDERS[kind]
        found.append((name, build(base, variant)))
    return found


def comparison_lines(name: str, comparison: dict[str, Any]) -> list[str]:
    return (overhead_lines if name == "http_overhead" else fidelity_lines)(comparison)
