"""What the harness reads from a server's Prometheus /metrics: running and waiting requests and KV-cache usage, and
vLLM's speculative-decoding counters (cumulative: a cell's figures are its last poll less its first)."""

from __future__ import annotations

METRICS = {  # our name -> the server's gauge names, newest first
    "vllm": {
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "spec_drafts_total": ("vllm:spec_decode_num_drafts_total",),
        "spec_draft_tokens_total": ("vllm:spec_decode_num_draft_tokens_total",),
        "spec_accepted_tokens_total": ("vllm:spec_decode_num_accepted_tokens_total",),
    },
    "sglang": {
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage": ("sglang:token_usage",),
    },
}


def prometheus_values(text: str) -> dict[str, float]:
    """Gauges from Prometheus text exposition, summed over their label sets (one engine: one series each)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values
