"""The `hf` engine: transformers `generate()` in one worker thread, one request at a time.

A `BaseStreamer` receives token ids (one `put()` per generated token) and hands them to the event
loop; the runner timestamps them on receipt. The streamer also stamps each `put()` with
`perf_counter_ns` in the worker thread: those are the engine-side timestamps, on the same clock.
There is no batching: concurrent requests wait for the worker, and that wait is part of their TTFT.
torch and transformers are imported when the engine is constructed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    ModelSource,
    Request,
    StreamingEngine,
    UsageError,
    check_keys,
    require_local_model,
    resolve_engine_args,
)
from engines.threads import OneWorkerTelemetry, ThreadChannel

DEFAULT_ARGS = {
    "dtype": "auto",  # auto = the model's config dtype; or float32, bfloat16, float16
    "threads": 1,  # torch intra-op threads
    "device": "cpu",  # or cuda
    "attn_implementation": "sdpa",
    "model_kwargs": "",  # JSON object: more from_pretrained(...) kwargs, e.g. {"low_cpu_mem_usage": true}
    "generate_kwargs": "",  # JSON object: more generate(...) kwargs; keys checked against GenerationConfig
}


def json_object(key: str, text: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"engine 'hf': {key} must be a JSON object ({exc.msg})") from None
    if not isinstance(value, dict):
        raise UsageError(f"engine 'hf': {key} must be a JSON object, e.g. {{\"top_k\": 5}}")
    return value


class _TokenStreamer:
    """A transformers streamer (`put`/`end`, all `generate()` calls): forwards each generated token to the
    event loop; skips the prompt (the first put)."""

    def __init__(self, channel: ThreadChannel):
        self.channel = channel
        self.prompt_seen_ns: int | None = None
        self.first_token_ns: int | None = None
        self.last_token_ns: int | None = None
        self.num_tokens = 0

    def put(self, value) -> None:
        now = time.perf_counter_ns()
        if self.prompt_seen_ns is None:
            self.prompt_seen_ns = now
            return
        ids = value.reshape(-1).tolist()
        if self.first_token_ns is None:
            self.first_token_ns = now
        self.last_token_ns = now
        self.num_tokens += len(ids)
        self.channel.put(ids)

    def end(self) -> None:
        self.channel.close()


class _CancelOnEvent:
    """A stopping criterion (a callable, as transformers' StoppingCriteriaList runs them): stop when set."""

    def __init__(self, event: threading.Event):
        import torch

        self.event, self.torch = event, torch

    def __call__(self, input_ids, scores, **kwargs):
        return self.torch.full((input_ids.shape[0],), self.event.is_set(), dtype=self.torch.bool)


class HFTransformersEngine(OneWorkerTelemetry, StreamingEngine):
    max_context_tokens: int | None = None  # the model's own limit
    context_arg: str | None = None
    # `generate()` kwargs; a temperature above 0 turns sampling on (do_sample), as greedy is the default
    request_keys = {k: k for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")}

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_engine_args("hf", given, DEFAULT_ARGS)

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        import torch  # noqa: F401  (a missing torch fails here, before anything is measured)

        self.args = resolve_engine_args("hf", engine_args or {}, DEFAULT_ARGS)
        self.model_kwargs = json_object("model_kwargs", self.args["model_kwargs"])
        self.generate_kwargs = json_object("generate_kwargs", self.args["generate_kwargs"])
        if self.generate_kwargs:
            from transformers import GenerationConfig

            check_keys("hf generate_kwargs", self.generate_kwargs, set(GenerationConfig().to_dict()))
        require_local_model("hf", model)
        self.model_spec = model
        self._model = None
        self._executor: ThreadPoolExecutor | None = None
        self._eos_ids: list[int] = []

    async def start(self) -> None:
        import torch

        torch.set_num_threads(self.args["threads"])
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._load)

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        dtype = self.args["dtype"]
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(
            str(self.model_spec.path),
            **{"dtype": torch_dtype, "attn_implementation": self.args["attn_implementation"], **self.model_kwargs},
        )
        eos = model.generation_config.eos_token_id
        self._eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        return model.to(self.args["device"]).eval()

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._model, self._executor = None, None

    async def reset_cache(self) -> None:
        return None  # no cache survives between generate() calls

    async def start_profile(self, folder: str) -> bool:
        """torch.profiler around the worker thread's generate calls (started and stopped on that thread); in `cuda`
        kind (--nsys), cudaProfilerStart/Stop instead, which nsys's capture range waits for."""
        import torch

        if self.profile_kind == "cuda":
            torch.cuda.profiler.start()
            return True

        def start():
            self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self._profiler.start()

        self._profile_path = f"{folder}/hf-trace-{time.strftime('%Y%m%dT%H%M%S')}.json"
        await asyncio.get_running_loop().run_in_executor(self._executor, start)
        return True

    async def stop_profile(self) -> str | None:
        import torch

        if self.profile_kind == "cuda":
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            return None

        def stop():
            self._profiler.stop()
            self._profiler.export_chrome_trace(self._profile_path)

        await asyncio.get_running_loop().run_in_executor(self._executor, stop)
        return self._profile_path

    def describe(self) -> EngineDescription:
        import torch
        import transformers

        model = self._model
        dtype = str(model.dtype).removeprefix("torch.") if model is not None else self.args["dtype"]
        return EngineDescription(
            name="hf",
            version=transformers.__version__,
            engine_args=dict(self.args),
            model={
                "id": self.model_spec.spec,
                "architecture": self.model_spec.architecture,
                "dtype": dtype,
                "quantization": None,
                "torch_version": torch.__version__,
            },
            capabilities=Capabilities(
                continuous_batching=False,
                prefix_cache=False,
                engine_timestamps=True,
                ignore_eos=True,
                max_concurrent_requests=1,
            ),
            notes=["one request at a time in one worker thread; concurrent requests queue for it"],
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        channel = ThreadChannel()
        streamer = _TokenStreamer(channel)
        job = channel.loop.run_in_executor(self._executor, self._generate_blocking, request, streamer, channel.cancel)
        self.in_flight += 1
        try:
            async for ids in channel.items():
                yield Chunk(len(ids), token_ids=ids)
            output_ids = await job
        finally:
            channel.cancel.set()  # a timed-out or abandoned request stops at its next token
            self.in_flight -= 1
        yield Chunk(
            0,
            finish_reason=self._finish_reason(request, output_ids),
            num_prompt_tokens=request.num_prompt_tokens,
            num_cached_tokens=0,
            engine_metrics={
                "clock": "perf_counter",
                "timestamps_ns": {
                    "generate_start": streamer.prompt_seen_ns,
                    "first_token": streamer.first_token_ns,
                    "last_token": streamer.last_token_ns,
                },
                "num_generation_tokens": streamer.num_tokens,
            },
        )

    def _finish_reason(self, request: Request, output_ids: list[int]) -> str:
        if len(output_ids) >= request.max_output_tokens:
            return "length"
        if output_ids and output_ids[-1] in self._eos_ids:
            return "stop"
        return "cancelled"

    def _generate_blocking(self, request: Request, streamer: _TokenStreamer, cancel: threading.Event) -> list[int]:
        import torch
        from transformers import StoppingCriteriaList

        device = self.args["device"]
        input_ids = torch.tensor([request.prompt_token_ids], dtype=torch.long, device=device)
        pad_id = self._eos_ids[0] if self._eos_ids else 0
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=request.max_output_tokens,
                min_new_tokens=request.min_new_tokens,
                do_sample=self.request_args.get("temperature", 0.0) > 0,
                pad_token_id=pad_id,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_CancelOnEvent(cancel)]),
                **{**self.generate_kwargs, **self.request_args},
            )
        return output[0, input_ids.shape[1] :].tolist()
