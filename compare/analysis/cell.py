"""One cell's derived figures, built in one place from its raw records and its recorded inputs.

The run writes a cell's inputs (config, records, cache resets, and what was watched around it: telemetry rows,
energy counters, the harness's loop, the SLO's limits) and then calls `derive_cell`; `--recompute` calls it again on
a stored file (`recompute`). Everything a cell reports beyond its inputs comes from here.
"""

from __future__ import annotations

from typing import Any

from compare.analysis.checks import observed_warnings, shared_gpu_warning
from compare.analysis.slo import goodput
from compare.analysis.speculative import counter_agreement, speculative_figures
from compare.analysis.steady import steady_window
from compare.analysis.stepcost import shape_steps, step_cost_document
from compare.analysis.structured import add_deltas
from compare.analysis.summaries import summarize_cell
from compare.analysis.telemetry import summarize_telemetry


def derive_cell(
    cell: dict[str, Any],
    capabilities: dict[str, Any],
    slo_limits: dict[str, float] | None = None,
    start_together: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summary, the scenario's own view, telemetry summary, goodput, energy per work and every warning, from
    `cell` (its records in "requests", "config", "cache_resets" and the observed parts as stored)."""
    records = cell["requests"]
    derived = summarize_cell(records, cell["config"], capabilities, cell["cache_resets"])
    wall_s = derived["summary"]["wall_s"]
    if "telemetry" in cell:
        rows = cell["telemetry"]["rows"]
        derived["telemetry"] = {**cell["telemetry"], "summary": summarize_telemetry(rows, records, int(wall_s * 1e9))}
    if cell["config"].get("step_shape"):
        derived["steps"] = shape_steps(cell)
    derived["steady"] = steady_window(records)  # warm-up and drain cut off (compare/analysis/steady.py)
    speculative = speculative_figures(records, cell["telemetry"]["rows"] if "telemetry" in cell else None)
    if speculative is not None:
        derived["speculative"] = speculative
    if slo_limits:
        derived["slo"] = goodput(records, slo_limits, wall_s)
    if "energy" in cell:
        derived["energy"] = energy_per_work(cell["energy"], sum(r.output_tokens for r in records), len(records))
    warnings = derived["warnings"] + observed_warnings({**cell, **derived})
    shared = shared_gpu_warning(start_together)
    disagreement = counter_agreement(speculative) if speculative else None
    derived["warnings"] = warnings + [line for line in (shared, disagreement) if line]
    return derived


def recompute(doc: dict[str, Any]) -> dict[str, Any]:
    """Every cell's derived figures again from its records and recorded inputs, in place, by the builder the run
    uses (compare/analysis/cell.py); returns the document."""
    capabilities = doc["engine"]["capabilities"]
    for cell in doc["cells"]:
        limits = (cell.get("slo") or {}).get("limits")
        cell.update(derive_cell(cell, capabilities, limits, doc.get("start_together")))
    add_deltas(doc["cells"], lambda cell: cell["requests"])
    step_cost = step_cost_document(doc["cells"])
    if step_cost is not None:
        doc["step_cost"] = step_cost
    return doc


def energy_per_work(energy: dict[str, Any], output_tokens: int, num_requests: int) -> dict[str, Any]:
    """Joules per output token and per request for every source that counted (all measured requests' tokens)."""
    out = dict(energy)
    for name, source in energy.items():
        if isinstance(source, dict) and source.get("available"):
            out[name] = {
                **source,
                "output_tokens": output_tokens,
                "num_requests": num_requests,
                "j_per_output_token": source["joules"] / output_tokens if output_tokens else None,
                "j_per_request": source["joules"] / num_requests if num_requests else None,
            }
    return out
