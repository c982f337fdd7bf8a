"""What a structured-output cell measured: how many outputs obey their constraint, how long they are, and what
the constraint cost against the same cell unconstrained.

Each constrained record's output is checked after its cell (`check_records`, off the hot path). The summary's
rates count checked outputs only (an engine that streams counts without text, like the null fake, has none).
The deltas pair a `cached` or `unique` cell with its `none` sibling (same id, `-none`): TTFT p50 (the compile
and the first mask, plus any queueing the constraint causes) and TPOT p50 (the per-token mask), each with a
95% bootstrap interval of the difference; "not significant" where the interval holds zero.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from compare.analysis.cellstats import per_request
from compare.analysis.stats import difference_interval
from compare.results.records import RequestRecord
from workloads.structured import check_output

MODE_SUFFIXES = ("-cached", "-unique")


def check_records(records: list[RequestRecord], requests) -> None:
    """Each constrained record's output checked against its request's constraint, in place."""
    constraints = {request.request_id: request.constraint for request in requests if request.constraint is not None}
    for record in records:
        constraint = constraints.get(record.id)
        if record.structured is not None and constraint is not None and "valid" not in record.structured:
            record.structured.update(check_output(constraint, record.structured.get("text")))


def structured_summary(records: list[RequestRecord], config: dict[str, Any]) -> dict[str, Any] | None:
    spec = config.get("structured")
    if not spec:
        return None
    ok = [r for r in records if r.ok]
    checked = [r.structured for r in ok if r.structured is not None and r.structured.get("valid") is not None]
    lengths = np.array([r.output_tokens for r in ok], dtype=np.float64)
    invalid = [s for s in checked if not s["valid"]]
    return {
        **spec,
        "num_constraints": len({r.structured["constraint"] for r in ok if r.structured is not None}),
        "num_checked": len(checked),
        "schema_valid_rate": sum(s["valid"] for s in checked) / len(checked) if checked else None,
        "parse_rate": sum(bool(s["parses"]) for s in checked) / len(checked) if checked else None,
        "output_tokens": {
            "mean": float(lengths.mean()),
            "p50": float(np.percentile(lengths, 50)),
            "p90": float(np.percentile(lengths, 90)),
            "max": int(lengths.max()),
        }
        if lengths.size
        else None,
        "finish_reasons": dict(Counter(str(r.finish_reason) for r in ok)),
        "first_invalid": [
            {"constraint": s["constraint"], "error": s.get("error"), "text": (s.get("text") or "")[:120]}
            for s in invalid[:3]
        ],
    }


def structured_warnings(summary: dict[str, Any] | None) -> list[str]:
    if not summary or summary["mode"] == "none" or not summary["num_checked"]:
        return []
    warnings = []
    bad = summary["num_checked"] - round(summary["schema_valid_rate"] * summary["num_checked"])
    if bad:
        first = summary["first_invalid"][0]
        warnings.append(
            f"structured: {bad} of {summary['num_checked']} outputs do not obey their constraint "
            f"(first: {first['constraint']}: {first['error'] or 'no match'})"
        )
    capped = summary["finish_reasons"].get("length", 0)
    if capped:
        warnings.append(
            f"structured: {capped} output(s) hit the output-token limit before their grammar ended; "
            "raise --output-tokens, or their truncated text is judged as it is"
        )
    return warnings


def add_deltas(cells: list[dict[str, Any]], records_of) -> None:
    """Each constrained cell's TTFT and TPOT p50 against its `none` sibling's, in place (`records_of(cell)`: its
    RequestRecords). A cell without a sibling (not in the run, or all failed) gets none."""
    by_id = {cell.get("cell_id"): cell for cell in cells}
    for cell in cells:
        summary = cell.get("structured")
        suffix = next((s for s in MODE_SUFFIXES if summary and cell["cell_id"].endswith(s)), None)
        if suffix is None:
            continue
        base = by_id.get(cell["cell_id"][: -len(suffix)] + "-none")
        if base is None:
            summary["vs_unconstrained"] = None
            continue
        ours, theirs = [r for r in records_of(cell) if r.ok], [r for r in records_of(base) if r.ok]
        summary["vs_unconstrained"] = {
            "cell": base["cell_id"],
            "ttft_ms_p50": difference_interval(per_request(ours, "ttft"), per_request(theirs, "ttft")),
            "tpot_ms_p50": difference_interval(per_request(ours, "tpot"), per_request(theirs, "tpot")),
        }


def delta_text(summary: dict[str, Any]) -> str:
    """`valid 100% (20/20), TTFT +12.1 ms [8.0, 15.2], TPOT +0.40 ms [0.1, 0.7] vs c1-in128-none` for the CLI."""
    parts = []
    if summary.get("num_checked"):
        valid = round(summary["schema_valid_rate"] * summary["num_checked"])
        parts.append(f"valid {summary['schema_valid_rate']:.0%} ({valid}/{summary['num_checked']})")
    versus = summary.get("vs_unconstrained")
    if versus:
        for name, key in (("TTFT", "ttft_ms_p50"), ("TPOT", "tpot_ms_p50")):
            d = versus.get(key)
            if d:
                note = "" if d["significant"] else " not significant"
                parts.append(f"{name} {d['value']:+.2f} ms [{d['low']:+.2f}, {d['high']:+.2f}]{note}")
        parts[-1] += f" vs {versus['cell']}"
    return ", ".join(parts)
