"""A cell's derived figures from its raw records: the summary, the scenario's own view, the warnings.

The runner calls this after each cell, and the report calls it again on stored files
(`--recompute`): every figure in a results file can be derived again from its records.
"""

from __future__ import annotations

from typing import Any

from compare.analysis.checks import cell_warnings, observed_warnings
from compare.analysis.metrics import language_summary, prefix_cache_summary, summarize
from compare.analysis.structured import add_deltas, structured_summary, structured_warnings
from compare.analysis.traffic import traffic_summary
from compare.results.records import RequestRecord


def summarize_cell(
    records: list[RequestRecord],
    config: dict[str, Any],
    capabilities: dict[str, Any],
    cache_resets: list[dict[str, Any]],
) -> dict[str, Any]:
    summary = summarize(records)
    mode = config["prompt_mode"]
    traffic = traffic_summary(records, config)
    structured = structured_summary(records, config)
    return {
        "summary": summary,
        "prefix_cache": prefix_cache_summary(records) if mode == "shared-prefix" and traffic is None else None,
        "language": language_summary(records) if mode == "language-pairs" else None,
        **({"traffic": traffic} if traffic is not None else {}),
        **({"structured": structured} if structured is not None else {}),
        "warnings": cell_warnings(records, summary, config, capabilities, cache_resets)
        + structured_warnings(structured),
    }


def recompute(doc: dict[str, Any]) -> dict[str, Any]:
    """Every cell's derived figures again from its records, in place; returns the document."""
    capabilities = doc["engine"]["capabilities"]
    for cell in doc["cells"]:
        cell.update(summarize_cell(cell["requests"], cell["config"], capabilities, cell["cache_resets"]))
        cell["warnings"] += observed_warnings(cell)
    add_deltas(doc["cells"], lambda cell: cell["requests"])
    return doc
