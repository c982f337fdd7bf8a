"""Streaming fidelity: a streaming engine's output tok/s over its offline-batch twin's, same requests.

An engine named `X-batch` (capability `offline_batch`) is the twin of `X`. Both ran the same planned
requests (plans are built once per scenario), so the ratio prices streaming itself: per-request
output handling, detokenisation and delivery, against the engine's best offline throughput.
"""

from __future__ import annotations

from typing import Any



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
