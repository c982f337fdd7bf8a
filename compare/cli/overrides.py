"""Scenario fields from flags: a flag given overrides that field of every scenario the run loads (None: not given)."""

from __future__ import annotations

import argparse
from typing import Any


def scenario_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "concurrency": tuple(args.concurrency) if args.concurrency else None,
        "input_tokens": tuple(args.input_tokens) if args.input_tokens else None,
        "output_tokens": args.output_tokens,
        "num_requests": args.num_requests,
        "repetitions": args.repetitions,
        "warmup_requests": args.warmups,
        "timeout_s": args.timeout,
        "seed": args.seed,
        "request_rate": tuple(args.request_rate) if args.request_rate else None,
        "burstiness": args.burstiness,
        "max_concurrency": args.max_concurrency,
        "trace_speedup": args.trace_speedup,
        "reasoning_delimiters": tuple(args.reasoning_delimiters.split(",")) if args.reasoning_delimiters else None,
        "structured": tuple(args.structured.split(",")) if args.structured else None,
        "structured_kind": args.structured_kind,
        "chat": args.chat,
        "lora_adapters": lora_adapters(args.lora_adapters),
        "lora_distribution": args.lora_distribution,
        "lora_zipf_alpha": args.lora_zipf_alpha,
        "lora_rank": args.lora_rank,
        "until_ci": args.until_ci,
        "until_ci_max_requests": args.until_ci_max_requests,
        "until_ci_max_s": args.until_ci_max_s,
        "end_saturated": True if args.end_saturated else None,
        # constrained output ends at EOS (its grammar's end): cells with a constraint do not ignore it
        "ignore_eos": False
        if args.to_eos or (args.structured and args.structured.replace("none", "").strip(","))
        else None,
    }


def lora_adapters(given: str | None) -> int | tuple[str, ...] | None:
    """--lora-adapters: a count, or comma-separated adapter folders."""
    if given is None:
        return None
    return int(given) if given.strip().isdigit() else tuple(p for p in given.split(",") if p)
