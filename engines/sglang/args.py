"""SGLang's knobs: the harness's defaults, every other `ServerArgs` field of the pinned sglang (its list, read
from the source by scripts/sglang_fields.py, so CPU machines check keys too), the `sglang.Engine` kwargs,
and the same as `python -m sglang.launch_server` flags for HTTP mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engines.servers import cli_flags

DEFAULT_ARGS: dict[str, Any] = {
    "disable_radix_cache": False,
    "chunked_prefill_size": 0,  # 0: SGLang's choice; -1 disables chunked prefill
    "mem_fraction_static": 0.0,  # 0: SGLang's choice
    "disable_overlap_schedule": False,
    "stream_interval": 1,
    "incremental_streaming_output": False,
    "attention_backend": "",  # "": SGLang's choice (e.g. fa3 on Hopper, triton, flashinfer)
    "tp_size": 1,
    "dp_size": 1,
    "load_format": "auto",  # "dummy" is chosen for models without weight files
    "dtype": "auto",
    "kv_cache_dtype": "auto",
    "context_length": 0,  # 0: the model's
    "enable_metrics": True,  # engine-side timestamps in meta_info
    "random_seed": 0,
    "log_level": "error",
    "skip_server_warmup": False,
    # HTTP: usage.prompt_tokens_details.cached_tokens (vLLM: --enable-prompt-tokens-details)
    "enable_cache_report": True,
    "load_snapshot_publish_interval": 1,  # SGLang's default 15 decode steps leaves 50 ms telemetry polls stale
    "constrained_json_disable_any_whitespace": True,  # structured output: compact JSON, as for vLLM (vllm_args.py)
}


SERVER_ARGS_FILE = Path(__file__).with_name("server_args.json")  # scripts/sglang_fields.py writes it


def server_args_fields() -> dict[str, str]:
    """Every `ServerArgs` field of the pinned sglang with its type, read from its source (so CPU machines check too)."""
    return {name: field["type"] for name, field in json.loads(SERVER_ARGS_FILE.read_text())["fields"].items()}


def server_args(args: dict[str, Any], model) -> dict[str, Any]:
    """Our engine args to `sglang.Engine(**kwargs)`: zeros and empty strings mean "SGLang decides"."""
    kwargs = {"model_path": str(model.path), "tokenizer_path": str(model.path)}
    for key, value in args.items():
        if value in (0, 0.0, "") and not isinstance(value, bool) and key not in ("random_seed",):
            continue
        kwargs[key] = value
    if kwargs.get("load_format", "auto") == "auto" and not model.has_weights:
        kwargs["load_format"] = "dummy"
    return kwargs


def launch_flags(kwargs: dict[str, Any]) -> list[str]:
    """`sglang.Engine` kwargs as `python -m sglang.launch_server` flags (model path given by the launcher);
    SGLang's boolean flags are store_true, so a false one is left out."""
    flags = cli_flags(kwargs, skip=("model_path", "lora_paths"))
    return flags + ["--lora-paths", *kwargs["lora_paths"]] if kwargs.get("lora_paths") else flags  # NAME=PATH each


def lora_kwargs(kwargs: dict[str, Any], adapters) -> dict[str, Any]:
    """Serve these adapters from the start: `lora_paths` as NAME=PATH, `max_lora_rank` their highest unless given
    (a given one below it: exit 2); `max_loras_per_batch` stays SGLang's (8) unless given."""
    from engines.base import check_lora_rank

    rank, given = max(a.rank for a in adapters), kwargs.get("max_lora_rank")
    check_lora_rank("sglang", rank, given)
    return {"enable_lora": True, "lora_paths": [f"{a.name}={a.path}" for a in adapters], "max_lora_rank": given or rank}
