"""A cell's derived figures from its raw records: the summary, the scenario's own view, the warnings.

compare/analysis/cell.py builds a whole cell from it (and from what was watched around the cell), for the run and
for `--recompute` alike.
"""

from __future__ import annotations

from typing import Any

from compare.analysis.checks import cell_warnings
from compare.analysis.metrics import language_summary, prefix_cache_summary, summarize
from compare.analysis.structured import structured_summary, structured_warnings
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
