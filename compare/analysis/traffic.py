"""Figures of the traffic workloads, from the records' tags and their engine-reported cached tokens.

- Prefix hit rate = cached prompt tokens / prompt tokens, over the requests whose engine reports cached
  tokens (vLLM: `num_cached_tokens`; SGLang: `cached_tokens`; over HTTP: `prompt_tokens_details`).
- Groups: per group, its first request (the first one sent) against its later ones: TTFT of each kind.
- Turns: per turn index, TTFT, prompt length and cached tokens (turn 0 is every conversation's first).
- Adapters (multi-LoRA): per adapter, and first use against later (compare/analysis/lora.py).
- Length buckets (wherever lengths vary in a cell): TTFT and TPOT by prompt length, TPOT and E2E by output
  length, in power-of-two buckets.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from compare.analysis.lora import adapters_summary
from compare.analysis.metrics import describe
from compare.results.records import RequestRecord


def traffic_summary(records: list[RequestRecord], config: dict[str, Any]) -> dict[str, Any] | None:
    traffic = config.get("traffic")
    if not traffic:
        return None
    ok = [r for r in records if r.ok]
    summary: dict[str, Any] = {"prefix_hit_rate": hit_rate(ok)}
    if traffic.get("kind") == "shared-prefix groups":
        summary["groups"] = groups_summary(ok)
    if traffic.get("kind") == "multi-turn":
        summary["turns"] = turns_summary(ok)
    if traffic.get("lora"):
        summary["by_adapter"] = adapters_summary(ok, traffic["lora"])
    if len({r.prompt_tokens for r in ok}) > 1 or len({r.target_output_tokens for r in ok}) > 1:
        summary["by_prompt_length"] = buckets(ok, lambda r: r.prompt_tokens, ("ttft_ms", "tpot_ms"))
        summary["by_output_length"] = buckets(ok, lambda r: r.target_output_tokens, ("tpot_ms", "e2e_ms"))
    return summary


def hit_rate(records: list[RequestRecord]) -> float | None:
    counted = [r for r in records if r.cached_tokens is not None]
    prompt = sum(r.prompt_tokens for r in counted)
    return sum(r.cached_tokens for r in counted) / prompt if counted and prompt else None


def groups_summary(ok: list[RequestRecord]) -> dict[str, Any]:
    by_group: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_group[(r.tags or {}).get("group", -1)].append(r)
    firsts, laters = [], []
    for members in by_group.values():
        members.sort(key=lambda r: r.sent_ns)
        firsts.append(members[0])
        laters += members[1:]
    first_ttft, later_ttft = _p50(firsts, "ttft_ms"), _p50(laters, "ttft_ms")
    return {
        "num_groups": len(by_group),
        "first_ttft_ms": describe(r.ttft_ms for r in firsts if r.ttft_ms is not None),
        "later_ttft_ms": describe(r.ttft_ms for r in laters if r.ttft_ms is not None),
        "ttft_p50_first_over_later": first_ttft / later_ttft if first_ttft and later_ttft else None,
        "first_hit_rate": hit_rate(firsts),
        "later_hit_rate": hit_rate(laters),
    }


def turns_summary(ok: list[RequestRecord]) -> dict[str, dict[str, Any]]:
    by_turn: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_turn[(r.tags or {}).get("turn", -1)].append(r)
    return {
        str(turn): {
            "count": len(members),
            "ttft_ms_p50": _p50(members, "ttft_ms"),
            "prompt_tokens_mean": sum(r.prompt_tokens for r in members) / len(members),
            "cached_tokens_mean": _mean([r.cached_tokens for r in members if r.cached_tokens is not None]),
            "prefix_hit_rate": hit_rate(members),
        }
        for turn, members in sorted(by_turn.items())
    }


def buckets(ok: list[RequestRecord], length_of, metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Power-of-two buckets of a length ("256-511"), each with its count and the metrics' p50."""
    by_bucket: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in ok:
        by_bucket[max(1, length_of(r)).bit_length() - 1].append(r)
    return {
        f"{1 << k}-{(1 << (k + 1)) - 1}": {"count": len(members), **{f"{m}_p50": _p50(members, m) for m in metrics}}
        for k, members in sorted(by_bucket.items())
    }


def _p50(records: list[RequestRecord], metric: str) -> float | None:
    return describe(v for r in records if (v := getattr(r, metric)) is not None).get("p50")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
