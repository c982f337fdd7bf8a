"""SGLang in-process: `sglang.Engine` driven with `await engine.async_generate(..., stream=True)`.

Read from SGLang's source (sgl-project/sglang, main at 001067ff, the 0.5.x line):
- `entrypoints/engine.py::Engine.async_generate` returns the tokenizer manager's async generator; the
  Engine binds to the event loop it is created in, so it is created inside the harness's loop.
- `managers/tokenizer_manager.py::_handle_batch_output`: chunks are `{"text", "output_ids",
  "meta_info"}`. By default `output_ids` is the request's live, cumulative list (read its length on
  arrival); with `incremental_streaming_output=True` it is the delta. `meta_info["completion_tokens"]`
  is always cumulative, so new tokens = its difference; the ids must agree, and a disagreement is
  recorded. `finish_reason` is None until the end, then e.g. `{"type": "length", "length": 256}`; the
  final chunk has `e2e_latency` (perf_counter seconds inside SGLang).
- `observability/req_time_stats.py`: with `enable_metrics=True`, `*_ts`, `forward_entry_time` and
  `prefill_finished_time` are wall-clock epoch seconds (SGLang's perf_counter plus an offset), and
  `queue_time` is a perf_counter difference. The adapter aligns the wall-clock stamps to the harness's
  perf_counter with its own `time.time_ns() - perf_counter_ns()` offset, taken at each request's send.
SGLang needs an NVIDIA GPU here: PyPI has no CPU build of `sgl_kernel`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    EngineUnavailable,
    ModelSource,
    Request,
    ServerLaunch,
    StreamingEngine,
    require_local_model,
)
from engines.constraints import KINDS, sglang_structured
from engines.engine_args import resolve_args
from engines.parallel import parallel_layout
from engines.sglang.args import DEFAULT_ARGS, launch_flags, lora_kwargs, server_args, server_args_fields
from engines.sglang.stream import StreamAccounting

NO_GPU = (
    "engine 'sglang' needs an NVIDIA GPU (PyPI has no CPU build of sgl_kernel); "
    "on CPU use --engine vllm or --engine llamacpp"
)

FLUSH_RETRIES = 50
FLUSH_RETRY_DELAY_S = 0.1
FLUSH_WAIT_S = 30.0  # flush_cache(timeout_s=): the scheduler flushes once idle instead of refusing at once


def resolved_server_args(engine) -> dict[str, Any]:
    """The server args in effect, read as SGLang's own `Engine.get_server_info` reads them (0.5.17:
    `tokenizer_manager.resolved_config_dict(asdict(server_args))`), with where they came from."""
    manager = getattr(engine, "tokenizer_manager", None)
    if manager is None or not hasattr(manager, "resolved_config_dict"):
        return {
            "resolved_server_args_source": "not available (engine not started, or an SGLang without "
            "resolved_config_dict)"
        }
    try:
        resolved = manager.resolved_config_dict(dataclasses.asdict(manager.server_args))
    except Exception as exc:  # recorded, never fatal
        return {"resolved_server_args_source": f"failed: {type(exc).__name__}: {exc}"}
    return {"resolved_server_args": resolved, "resolved_server_args_source": "tokenizer_manager.resolved_config_dict"}


class SGLangEngine(StreamingEngine):
    name = "sglang"
    context_arg = "context_length"
    # the sampling-params dict (sglang/srt/sampling/sampling_params.py, 0.5.17); logprobs are generate() kwargs there,
    # not passed yet
    request_keys = {
        **{
            k: k
            for k in (
                "temperature",
                "top_p",
                "top_k",
                "min_p",
                "presence_penalty",
                "frequency_penalty",
                "repetition_penalty",
                "n",
                "stop",
                "stop_token_ids",
            )
        },
        "seed": "sampling_seed",
    }
    constraint_kinds = KINDS  # `json_schema` / `regex` in the sampling params (a choice as a regex)
    serves_http = True  # python -m sglang.launch_server
    serves_lora = True  # multi-LoRA: `lora_paths` at start, `lora_path` (the adapter's name) per request

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_args("sglang", given, DEFAULT_ARGS, server_args_fields())

    @classmethod
    def why_no_step_records(cls, given: dict[str, str]) -> str | None:
        return (
            "SGLang's scheduler runs in its own process and its in-process Engine gives no per-step records (only "
            "polled loads); batch-shapes runs on vLLM (docs/steps.md)"
        )

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None, runtime=None):
        """`runtime`: an already-created `sglang.Engine` to drive (tests pass a named fake)."""
        # ours cast to our defaults' types; any ServerArgs field passed through, typed
        self.args, self.passed_through = resolve_args("sglang", engine_args or {}, DEFAULT_ARGS, server_args_fields())
        require_local_model("sglang", model, needs_weights=False)  # dummy weights for config-only models
        if runtime is None and not _cuda_available():
            raise EngineUnavailable(NO_GPU)
        self.model_spec = model
        self.kwargs = {**server_args(self.args, model), **self.passed_through}
        self.max_context_tokens = self.args["context_length"] or None  # None: the model's own limit
        self._engine = runtime
        self.internal_state: Any = None
        self.kv_capacity: int | None = None
        self.cache_flushes: list[dict[str, Any]] = []

    def use_lora(self, adapters) -> None:
        self.kwargs.update(lora_kwargs(self.kwargs, adapters))

    def http_server(self) -> ServerLaunch:
        """How HTTP mode launches `python -m sglang.launch_server` with the same args."""
        return ServerLaunch("sglang", str(self.model_spec.path), tuple(launch_flags(self.kwargs)))

    async def start(self) -> None:
        if self._engine is None:
            import sglang

            self._engine = sglang.Engine(**self.kwargs)  # inside our loop: SGLang binds to it
        try:
            self.internal_state = await self._engine.tokenizer_manager.get_internal_state()
        except Exception as exc:  # recorded, never fatal
            self.internal_state = {"error": f"{type(exc).__name__}: {exc}"}
        self.kv_capacity = self._read_kv_capacity()

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()  # note: kills every child process of this process
            self._engine = None

    async def reset_cache(self) -> dict[str, Any] | None:
        """`flush_cache(timeout_s=30)` waits for an idle scheduler; a refusal is retried, then it fails loudly."""
        if self.args["disable_radix_cache"]:
            return None
        message = None
        for attempt in range(1, FLUSH_RETRIES + 1):
            result = await self._engine.tokenizer_manager.flush_cache(timeout_s=FLUSH_WAIT_S)
            success = getattr(result, "success", result)
            message = getattr(result, "message", None)
            if success:
                self.cache_flushes.append({"attempts": attempt})
                return {"attempts": attempt}
            await asyncio.sleep(FLUSH_RETRY_DELAY_S)
        raise RuntimeError(f"SGLang flush_cache failed {FLUSH_RETRIES} times: {message or 'scheduler not idle'}")

    async def telemetry_snapshot(self) -> dict[str, Any] | None:
        """`tokenizer_manager.get_loads()` (SGLang's /v1/loads source), summed over its schedulers."""
        manager = self._engine.tokenizer_manager
        if not hasattr(manager, "get_loads"):
            return None
        loads = await manager.get_loads()
        if not loads:
            return None
        return {
            "running": sum(getattr(x, "num_running_reqs", 0) for x in loads),
            "waiting": sum(getattr(x, "num_waiting_reqs", 0) for x in loads),
            "kv_cache_usage": max(getattr(x, "token_usage", 0.0) for x in loads),
            "cache_hit_rate": max(getattr(x, "cache_hit_rate", 0.0) for x in loads),
        }

    async def start_profile(self, folder: str) -> bool:
        """SGLang's own profiler (`tokenizer_manager.start_profile`, a ProfileReq with output_dir)."""
        from sglang.srt.managers.io_struct import ProfileReq

        self._profile_folder = folder
        activities = {"activities": ["CUDA_PROFILER"]} if self.profile_kind == "cuda" else {}  # nsys capture range
        await self._engine.tokenizer_manager.start_profile(ProfileReq(output_dir=folder, **activities))
        return True

    async def stop_profile(self) -> str | None:
        await self._engine.tokenizer_manager.stop_profile()
        return self._profile_folder

    def kv_capacity_tokens(self) -> int | None:
        """SGLang's KV pool (`max_total_num_tokens`), read at start from the schedulers' init info. (Its
        `get_server_info()` calls `loop.run_until_complete` on the harness's running loop and always failed.)"""
        return self.kv_capacity

    def _read_kv_capacity(self) -> int | None:
        init = getattr(self._engine, "_scheduler_init_result", None)  # 0.5.17: Engine._scheduler_init_result
        infos = getattr(init, "scheduler_infos", None) or []
        value = infos[0].get("max_total_num_tokens") if infos else None
        if not value and isinstance(self.internal_state, (list, tuple)) and self.internal_state:
            value = (self.internal_state[0] or {}).get("max_total_num_tokens")
        return int(value) if value else None

    def describe(self) -> EngineDescription:
        resolved = dict(self.kwargs)
        resolved.update(resolved_server_args(self._engine))
        return EngineDescription(
            name="sglang",
            version=_sglang_version(),
            engine_args=resolved,
            model={
                "id": self.model_spec.spec,
                "architecture": self.model_spec.architecture,
                "dtype": self.args["dtype"] if self.args["dtype"] != "auto" else self.model_spec.dtype,
                "quantization": None,
                "kv_cache_dtype": self.args["kv_cache_dtype"],
                "load_format": self.kwargs.get("load_format", "auto"),
            },
            capabilities=Capabilities(
                continuous_batching=True,
                prefix_cache=not self.args["disable_radix_cache"],
                engine_timestamps=bool(self.args["enable_metrics"]),
                ignore_eos=True,
            ),
            notes=[f"internal state at start: {self.internal_state!r}"[:2000]],
            parallel=parallel_layout("sglang", {**self.kwargs, **resolved.get("resolved_server_args", {})}),
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        sampling = {
            "max_new_tokens": request.max_output_tokens,
            "min_new_tokens": request.min_new_tokens,
            "ignore_eos": request.ignore_eos,
            "temperature": request.temperature,
            **self.request_args,
            **(sglang_structured(request.constraint) if request.constraint is not None else {}),
        }
        accounting = StreamAccounting(
            self.args["incremental_streaming_output"], time.time_ns() - time.perf_counter_ns()
        )
        stream = await self._engine.async_generate(
            input_ids=list(request.prompt_token_ids),
            sampling_params=sampling,
            stream=True,
            **({"lora_path": request.lora_name} if request.lora_name is not None else {}),
        )
        async for out in stream:
            yield accounting.convert(out)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _sglang_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
