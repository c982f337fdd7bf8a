"""Output agreement: do two runs that sent the same prompts get the same tokens back? Per cell, over the requests
both completed (matched by request id, which the plan derives from the cell and the seed), from each record's
output fingerprint (compare/results/outputs.py): the share of requests whose outputs are identical, and where the
others first differ (token position, p50 and min).

Greedy decoding makes it a check: an ablation that makes a step faster by changing what the model says shows here,
not as a win. Two engines, two precisions or a quantized export differ within tens of tokens even when both are
right (kernels round differently), so it is a figure to read, never a pass or fail; a point of a sweep or `--vs`
whose outputs diverge from its baseline's carries a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compare.results.outputs import first_divergence


def cell_agreement(cell_a: dict[str, Any], cell_b: dict[str, Any]) -> dict[str, Any] | None:
    """None where no request of both cells carries a fingerprint (an engine that streams text only)."""
    fingerprints_b = {r.id: r.output_fingerprint for r in cell_b["requests"] if r.ok}
    positions: list[int | None] = []
    for record in cell_a["requests"]:
        theirs = fingerprints_b.get(record.id)
        if record.ok and record.output_fingerprint and theirs:
            positions.append(first_divergence(record.output_fingerprint, theirs))
    if not positions:
        return None
    diverged = np.array([p for p in positions if p is not None])
    return {
        "num_compared": len(positions),
        "num_identical": len(positions) - diverged.size,
        "identical_share": (len(positions) - diverged.size) / len(positions),
        "first_divergence_p50": float(np.median(diverged)) if diverged.size else None,
        "first_divergence_min": int(diverged.min()) if diverged.size else None,
    }


def run_agreement(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per cell id the two runs share: its agreement (cells without fingerprints left out)."""
    cells_b = {cell["cell_id"]: cell for cell in doc_b["cells"]}
    found = {}
    for cell in doc_a["cells"]:
        if cell["cell_id"] in cells_b:
            agreement = cell_agreement(cell, cells_b[cell["cell_id"]])
            if agreement is not None:
                found[cell["cell_id"]] = agreement
    return found


def agreement_text(agreement: dict[str, Any]) -> str:
    same, compared = agreement["num_identical"], agreement["num_compared"]
    text = f"outputs identical for {same}/{compared} requests"
    if same < compared:
        text += (
            f"; the others first differ at token {agreement['first_divergence_p50']:g} (p50), "
            f"{agreement['first_divergence_min']} at the earliest"
        )
    return text


def divergence_warning(label: str, agreement: dict[str, Any]) -> str | None:
    """For a point compared with its baseline: outputs that changed are a warning (it may be faster by saying less)."""
    if agreement["num_identical"] == agreement["num_compared"]:
        return None
    return f"outputs diverge from the baseline's ({label}): {agreement_text(agreement)}"
