"""vLLM's scheduler, step by step: a stat logger passed as `stat_loggers=` to `AsyncLLM.from_engine_args`.

vLLM's output handler calls `record(scheduler_stats, iteration_stats, ...)` once per engine-core output
batch, that is once per engine step, right after it has queued the step's tokens for their requests
(`vllm/v1/engine/async_llm.py`, `vllm/v1/metrics/loggers.py`). Each call becomes one row stamped with
the harness's `perf_counter_ns`: running and waiting requests, KV-cache usage, prefix-cache queries
and hits, preemptions, the step's new and prompt tokens, and, where the version and config have them,
iteration details (prefill and decode tokens of the step, the wall time of its model execution;
`enable_logging_iteration_details`),
speculative-decoding counters (drafts, draft tokens, accepted tokens) where it is on, and perf stats (FLOPs and
bytes per step; `enable_mfu_metrics`). Fields a version lacks are left out.
The stats classes are not a stable vLLM interface, so every field is read optionally.
"""

from __future__ import annotations

import os
from pathlib import Path
from time import perf_counter_ns
from typing import Any


def step_row(scheduler_stats, iteration_stats) -> dict[str, Any]:
    row: dict[str, Any] = {"t_ns": perf_counter_ns()}
    if scheduler_stats is not None:
        row["running"] = getattr(scheduler_stats, "num_running_reqs", None)
        row["waiting"] = getattr(scheduler_stats, "num_waiting_reqs", None)
        row["kv_cache_usage"] = getattr(scheduler_stats, "kv_cache_usage", None)
        prefix = getattr(scheduler_stats, "prefix_cache_stats", None)
        if prefix is not None:
            row["prefix_queries"], row["prefix_hits"] = getattr(prefix, "queries", None), getattr(prefix, "hits", None)
        details = getattr(scheduler_stats, "iteration_details", None)
        if details is not None:
            row.update(
                step=details.iteration_index,
                prefill_requests=details.num_ctx_requests,
                prefill_tokens=details.num_ctx_tokens,
                decode_requests=details.num_generation_requests,
                decode_tokens=details.num_generation_tokens,
                execute_ms=details.elapsed_ms,  # monotonic wall time around the forward pass, not CPU time
            )
        adapters = getattr(scheduler_stats, "running_lora_adapters", None)  # multi-LoRA: name -> running requests
        if adapters:
            row["running_adapters"] = sum(1 for n in adapters.values() if n)
        spec = getattr(scheduler_stats, "spec_decoding_stats", None)  # speculative decoding on: this step's counters
        if spec is not None:
            row.update(
                spec_drafts=spec.num_drafts,
                spec_draft_tokens=spec.num_draft_tokens,
                spec_accepted_tokens=spec.num_accepted_tokens,
                spec_accepted_per_pos=list(getattr(spec, "num_accepted_tokens_per_pos", None) or []),
            )
        perf = getattr(scheduler_stats, "perf_stats", None)
        if perf is not None:
            row.update(flops=perf.num_flops_per_gpu, read_bytes=perf.num_read_bytes_per_gpu)
    if iteration_stats is not None:
        row["new_tokens"] = getattr(iteration_stats, "num_generation_tokens", None)
        prompt = getattr(iteration_stats, "prompt_token_stats", None)
        row["prompt_tokens_done"] = (
            prompt.computed if prompt is not None else getattr(iteration_stats, "num_prompt_tokens", None)
        )
        row["preempted"] = getattr(iteration_stats, "num_preempted_reqs", None)
    return {k: v for k, v in row.items() if v is not None}


def timeline_logger(rows: list[dict[str, Any]]):
    """A `StatLoggerFactory`: vLLM calls it with (vllm_config, engine_index); every instance appends to `rows`."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class StepTimeline(StatLoggerBase):
        def __init__(self, vllm_config=None, engine_index: int = 0):
            self.engine_index = engine_index

        def record(self, scheduler_stats=None, iteration_stats=None, *args, **kwargs):
            rows.append(step_row(scheduler_stats, iteration_stats))

        def log_engine_initialized(self):
            pass

    return StepTimeline


INFO_LOGGING_CONFIG = Path(__file__).with_name("logging_info.json")


def quiet_step_logger() -> str | None:
    """vLLM (0.26-0.32 `StatLoggerManager`) adds its LoggingStatLogger when `vllm.v1.metrics.loggers` logs at INFO,
    and with iteration details on that logger writes one line per engine step on the harness's event loop. At
    VLLM_LOGGING_LEVEL=INFO (wanted for the start phases) vLLM is given a logging config (VLLM_LOGGING_CONFIG_PATH)
    that keeps everything at INFO but that one logger at WARNING. A level set in code would not hold: vLLM's
    dictConfig resets child loggers, and 0.32 configures logging again when the engine is built. Call it before
    vLLM is imported; returns the config path it set, or None (another level, or the user's own config)."""
    if os.environ.get("VLLM_LOGGING_LEVEL", "").upper() != "INFO" or os.environ.get("VLLM_LOGGING_CONFIG_PATH"):
        return None
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(INFO_LOGGING_CONFIG)
    return str(INFO_LOGGING_CONFIG)
