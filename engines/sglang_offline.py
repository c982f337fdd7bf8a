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
    Request,
    ServerLaunch,
    StreamingEngine,
    require_local_model,
    token_count_mismatch,
)
from engines.engine_args import resolve_args
from engines.parallel import parallel_layout
from engines.sglang_args import DEFAULT_ARGS, launch_flags, server_args, server_args_fields

NO_GPU = "engine 'sglang' needs an NVIDIA GPU (PyPI has no CPU build of sgl_kernel); on CPU use --engine vllm or --engine llamacpp"

FLUSH_RETRIES = 50
FLUSH_RETRY_DELAY_S = 0.1
# meta_info stamp -> our name; all wall-clock epoch seconds
WALL_STAMPS = {
    "request_received_ts": "received",
    "forward_entry_time": "scheduled",
    "prefill_finished_time": "first_token",
    "response_sent_to_client_ts": "first_chunk_sent",
    "request_finished_ts": "finished",
}
# meta_info durations (seconds); 0.5.17 has no prefill_launch_latency (the prefill comes from the stamps instead)
DURATIONS = {"queue_time": "queue", "e2e_latency": "e2e"}
FLUSH_WAIT_S = 30.0  # flush_cache(timeout_s=): the scheduler flushes once idle instead of refusing at once


def resolved_server_args(engine) -> dict[str, Any]:
    """The server args in effect, read as SGLang's own `Engine.get_server_info` reads them (0.5.17:
    `tokenizer_manager.resolved_config_dict(asdict(server_args))`), with where they came from."""
    manager = getattr(engine, "tokenizer_manager", None)
    if manager is None or not hasattr(manager, "resolved_config_dict"):
        return {"resolved_server_args_source": "not available (engine not started, or an SGLang without resolved_config_dict)"}
    try:
        resolved = manager.resolved_config_dict(dataclasses.asdict(manager.server_args))
    except Exception as exc:  # recorded, never fatal
        return {"resolved_server_args_source": f"failed: {type(exc).__name__}: {exc}"}
    return {"resolved_server_args": resolved, "resolved_server_args_source": "tokenizer_manager.resolved_config_dict"}


def finish_reason_name(reason: Any) -> str | None:
    if reason is None:
        return None
    if isinstance(reason, dict):
        return str(reason.get("type"))
    return str(reason)


class StreamAccounting:
    """Turns one request's SGLang chunks into harness Chunks; exact on token counts."""

    def __init__(self, incremental: bool, wall_minus_perf_ns: int):
        self.incremental = incremental
        self.wall_minus_perf_ns = wall_minus_perf_ns
        self.completion_tokens = 0
        self.num_ids = 0
        self.text_len = 0
        self.num_chunks = 0
        self.mismatches: list[dict[str, int]] = []
        self.stamps_ns: dict[str, int] = {}

    def convert(self, out: dict[str, Any]) -> Chunk:
        meta = out.get("meta_info") or {}
        ids = out.get("output_ids") or []
        new_ids = list(ids) if self.incremental else list(ids[self.num_ids :])  # live list: slice on arrival
        self.num_ids += len(new_ids)
        completion = meta.get("completion_tokens")
        new_tokens = completion - self.completion_tokens if completion is not None else len(new_ids)
        if completion is not None:
            if new_tokens != len(new_ids):
                self.mismatches.append(token_count_mismatch(self.num_chunks, "completion_tokens", new_tokens, len(new_ids)))
            self.completion_tokens = completion
        self.num_chunks += 1
        self._collect_stamps(meta)
        text = out.get("text")
        if text is not None and not self.incremental:
            text, self.text_len = text[self.text_len :], len(text)
        reason = meta.get("finish_reason")
        if reason is None:
            return Chunk(new_tokens, token_ids=new_ids, text=text)
        return Chunk(
            new_tokens,
            token_ids=new_ids,
            text=text,
            finish_reason=finish_reason_name(reason),
            num_prompt_tokens=meta.get("prompt_tokens"),
            num_cached_tokens=meta.get("cached_tokens"),
            engine_metrics=self._engine_metrics(meta, reason),
        )

    def _collect_stamps(self, meta: dict[str, Any]) -> None:
        for key, name in WALL_STAMPS.items():
            value = meta.get(key)
            if value and name not in self.stamps_ns:  # first report wins (first chunk, first token)
                self.stamps_ns[name] = int(value * 1e9) - self.wall_minus_perf_ns

    def _engine_metrics(self, meta: dict[str, Any], reason: Any) -> dict[str, Any]:
        durations = {name: int(meta[key] * 1e9) for key, name in DURATIONS.items() if meta.get(key) is not None}
        stamps = self.stamps_ns
        if "first_token" in stamps and "scheduled" in stamps:
            durations["prefill"] = stamps["first_token"] - stamps["scheduled"]
        if "finished" in stamps and "first_token" in stamps:
            durations["decode"] = stamps["finished"] - stamps["first_token"]
        metrics: dict[str, Any] = {
            "durations_ns": durations,
            "finish_reason_detail": reason,
            "num_chunks": self.num_chunks,
            "token_count_mismatches": self.mismatches,
        }
        if meta.get("spec_accept_length") is not None:  # speculative decoding on: SGLang's accepted tokens per step
            metrics["spec_accept_length"] = meta["spec_accept_length"]
        if stamps:
            metrics["clock"] = "perf_counter"
            metrics["clock_note"] = "SGLang wall-clock stamps aligned with the harness's time.time()-perf_counter() offset at send"
            metrics["timestamps_ns"] = dict(stamps)
        return metrics


class SGLangEngine(StreamingEngine):
    name = "sglang"
    context_arg = "context_length"

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_args("sglang", given, DEFAULT_ARGS, server_args_fields())

    def __init__(self, model, engine_args: dict[str, str] | None = None, runtime=None):
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
        return {"running": sum(getattr(x, "num_running_reqs", 0) for x in loads),
                "waiting": sum(getattr(x, "num_waiting_reqs", 0) for x in loads),
                "kv_cache_usage": max(getattr(x, "token_usage", 0.0) for x in loads),
                "cache_hit_rate": max(getattr(x, "cache_hit_rate", 0.0) for x in loads)}  # fmt: skip

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
        }
        accounting = StreamAccounting(self.args["incremental_streaming_output"], time.time_ns() - time.perf_counter_ns())
        stream = await self._engine.async_generate(
            input_ids=list(request.prompt_token_ids), sampling_params=sampling, stream=True
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
