"""Multi-LoRA figures of a cell, from each record's `adapter` tag (workloads/lora.py draws it).

- Per adapter: its requests, TTFT and TPOT p50/p99, and its first request (the first one sent in the cell)
  against its later ones: the first pays the adapter's load where the engine did not hold it yet.
- Over the cell: the first uses' TTFT p50 against the later requests', and their difference (the load cost as
  the cell saw it); adapters ranked by popularity (1: the most requests), which the report draws TTFT against.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from compare.analysis.metrics import describe
from compare.results.records import RequestRecord


def adapters_summary(ok: list[RequestRecord], lora: dict[str, Any]) -> dict[str, Any]:
    names = lora["adapters"]
    by_adapter: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_adapter[(r.tags or {}).get("adapter", -1)].append(r)
    ranked = sorted(by_adapter, key=lambda k: (-len(by_adapter[k]), k))
    rows, firsts, laters = {}, [], []
    for rank, index in enumerate(ranked, start=1):
        members = sorted(by_adapter[index], key=lambda r: r.sent_ns)
        firsts.append(members[0])
        laters += members[1:]
        rows[names[index] if 0 <= index < len(names) else "base"] = {
            "requests": len(members),
            "popularity_rank": rank,
            "ttft_ms": _p50_p99(members, "ttft_ms"),
            "tpot_ms": _p50_p99(members, "tpot_ms"),
            "first_ttft_ms": members[0].ttft_ms,
            "later_ttft_ms_p50": describe(r.ttft_ms for r in members[1:] if r.ttft_ms is not None).get("p50"),
        }
    first_p50 = describe(r.ttft_ms for r in firsts if r.ttft_ms is not None).get("p50")
    later_p50 = describe(r.ttft_ms for r in laters if r.ttft_ms is not None).get("p50")
    return {
        "num_adapters_used": len(by_adapter),
        "first_use_ttft_ms_p50": first_p50,
        "later_ttft_ms_p50": later_p50,
        "first_use_minus_later_ttft_ms": first_p50 - later_p50
        if first_p50 is not None and later_p50 is not None
        else None,
        "adapters": rows,
    }


def _p50_p99(records: list[RequestRecord], metric: str) -> dict[str, float | None]:
    stats = describe(v for r in records if (v := getattr(r, metric)) is not None)
    return {"p50": stats.get("p50"), "p99": stats.get("p99")}
