"""`llamacpp`: llama-cpp-python in-process on a GGUF export of the model, one request at a time.

It drives `Llama.generate(prompt_ids)`, which yields one sampled token id at a time (with prompt lookup a step's tokens
one after another: the worker hands each step over as one chunk). Not
`create_completion(stream=True)`: in llama-cpp-python 0.3.36 (`llama.py::_create_completion`) a token
that leaves an incomplete UTF-8 sequence `continue`s past the `max_tokens` check (seen here: 229
tokens for max_tokens=32 with random weights) and held-back tokens are yielded merged, so its chunks
are neither bounded nor one per token. Greedy sampling (temperature 0, no repeat penalty); the output
length is fixed by banning EOS in the logits (what `logit_bias` does). llama.cpp reuses
the longest common prefix of the previous prompt implicitly; the engine calls `reset()` before every
request unless the request expects prefix reuse (the `prefix-cache` scenario), where the reused
length is reported as cached tokens. Engine-side prompt-eval and eval timings come from llama.cpp's
perf counters, and every token is also stamped in the worker thread on the harness's clock.
The GGUF file is exported into the run's cache (`--cache-dir`); llama_cpp is imported on construction.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    ModelSource,
    Request,
    ServerLaunch,
    StreamingEngine,
    capped_context,
    require_local_model,
)
from engines.constraints import llamacpp_grammar
from engines.engine_args import annotation_text, resolve_args
from engines.gguf import model_gguf
from engines.threads import OneWorkerTelemetry, ThreadChannel

DEFAULT_ARGS: dict[str, Any] = {
    "quant": "",  # GGUF to run: "" the shipped file of a pypi: model, else f16; shipped, f16, bf16, q8_0, q4_k_m
    "n_threads": 1,
    "n_ctx": 0,  # 0: the model's context, capped at 8192
    "n_batch": 512,
    # prompt-lookup decoding (engines/llamacpp_lookup.py): draft up to this many tokens from the prompt (0: off)
    "prompt_lookup_num_pred_tokens": 0,
    "prompt_lookup_max_ngram_size": 2,
}


def llama_fields() -> dict[str, str]:
    """`llama_cpp.Llama(...)`'s parameters with their annotations, from the installed package's signature."""
    import inspect

    import llama_cpp

    skip = {"self", "model_path", "kwargs"}
    return {
        name: annotation_text(p.annotation)
        for name, p in inspect.signature(llama_cpp.Llama.__init__).parameters.items()
        if name not in skip
    }


class LlamaCppEngine(OneWorkerTelemetry, StreamingEngine):
    context_arg = "n_ctx"
    serves_http = True  # python -m llama_cpp.server
    # `Llama.generate` kwargs (stops and logprobs belong to create_completion, which this adapter does not use)
    constraint_kinds = ("json", "choice")  # a GBNF grammar: from the schema (llama.cpp's converter), or the choices
    request_keys = {
        "temperature": "temp",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
        "repetition_penalty": "repeat_penalty",
    }

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_args("llamacpp", given, DEFAULT_ARGS, llama_fields())

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        import llama_cpp  # noqa: F401  (a missing package fails here, before anything is measured)

        # ours cast to our defaults' types; any Llama(...) parameter passed through, typed
        self.args, self.passed_through = resolve_args("llamacpp", engine_args or {}, DEFAULT_ARGS, llama_fields())
        require_local_model("llamacpp", model)
        self.model_spec = model
        self.n_ctx = capped_context(self.args["n_ctx"], model)
        self.max_context_tokens = self.n_ctx  # checked against every planned prompt before measuring
        self.gguf: dict[str, Any] = {}
        self.lookup = None  # prompt-lookup decoding's counting draft model, where it is on
        self._llm = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        path, record = await asyncio.to_thread(
            model_gguf, self.model_spec, self.args["quant"], self.model_spec.cache_dir
        )
        self.gguf = {"path": str(path), **record}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._llm = await asyncio.get_running_loop().run_in_executor(self._executor, self._load, path)

    def _load(self, path: Path):
        import llama_cpp

        kwargs = dict(
            n_ctx=self.n_ctx,
            n_threads=self.args["n_threads"],
            n_threads_batch=self.args["n_threads"],
            n_batch=self.args["n_batch"],
            n_gpu_layers=0,
            seed=0,
            verbose=False,
        )
        if self.args["prompt_lookup_num_pred_tokens"] > 0:
            from engines.llamacpp_lookup import CountingPromptLookup

            self.lookup = CountingPromptLookup(
                self.args["prompt_lookup_num_pred_tokens"], self.args["prompt_lookup_max_ngram_size"]
            )
            kwargs["draft_model"] = self.lookup
        return llama_cpp.Llama(model_path=str(path), **{**kwargs, **self.passed_through})  # given knobs win

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._llm is not None:
            self._llm.close()
        self._llm, self._executor = None, None

    def http_server(self) -> ServerLaunch:
        """How HTTP mode launches `python -m llama_cpp.server` with the same GGUF and args."""
        path, _ = model_gguf(self.model_spec, self.args["quant"], self.model_spec.cache_dir)
        flags = (
            "--n_threads",
            str(self.args["n_threads"]),
            "--n_ctx",
            str(self.n_ctx),
            "--n_batch",
            str(self.args["n_batch"]),
            "--interrupt_requests",
            "False",  # its default cuts a running stream off when the next request arrives
            *lookup_flags(self.args),
            *(
                item
                for key, value in self.passed_through.items()
                for item in (f"--{key}", json.dumps(value) if isinstance(value, (dict, list)) else str(value))
            ),
        )
        return ServerLaunch("llamacpp", str(path), flags)

    async def reset_cache(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._llm.reset)

    def describe(self) -> EngineDescription:
        import llama_cpp

        metadata = dict(self._llm.metadata) if self._llm is not None else {}
        return EngineDescription(
            name="llamacpp",
            version=llama_cpp.__version__,
            engine_args={
                **self.args,
                "n_ctx": self.n_ctx,
                "gguf": self.gguf,
                **self.passed_through,
                "passed_through": sorted(self.passed_through),
            },
            model={
                "id": self.model_spec.spec,
                "architecture": metadata.get("general.architecture", self.model_spec.architecture),
                "dtype": self.gguf.get("quantization", self.args["quant"]),
                "quantization": self.gguf.get("quantization", self.args["quant"]),
                "gguf_file_type": metadata.get("general.file_type"),
                "gguf_size_bytes": self.gguf.get("size_bytes"),
            },
            capabilities=Capabilities(
                continuous_batching=False,
                prefix_cache=True,
                engine_timestamps=True,
                ignore_eos=True,
                max_concurrent_requests=1,
            ),
            notes=[
                "one request at a time; llama.cpp's implicit prompt-prefix reuse is cleared before every request "
                "except where the scenario measures prefix reuse",
                f"GGUF {self.gguf.get('quantization')} "
                + ("as shipped" if self.gguf.get("as_shipped") else "exported")
                + f" for {self.model_spec.spec}: compare with bf16 engines knowingly",
            ],
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        channel = ThreadChannel()
        job = channel.loop.run_in_executor(self._executor, self._generate_blocking, request, channel)
        self.in_flight += 1
        try:
            async for tokens in channel.items():  # one token, or with prompt lookup one step's tokens
                yield Chunk(len(tokens), token_ids=tokens)
            summary = await job
        finally:
            channel.cancel.set()
            self.in_flight -= 1
        yield Chunk(
            0,
            finish_reason=summary["finish_reason"],
            num_prompt_tokens=summary["num_prompt_tokens"],
            num_cached_tokens=summary["num_cached_tokens"],
            engine_metrics=summary["engine_metrics"],
        )

    def _generate_blocking(self, request: Request, channel: ThreadChannel) -> dict[str, Any]:
        import llama_cpp

        llm = self._llm
        prompt = list(request.prompt_token_ids)
        if not request.reuse_prefix:
            llm.reset()
        cached = min(_common_prefix(llm._input_ids.tolist(), prompt), len(prompt) - 1) if llm.n_tokens else 0
        llama_cpp.llama_perf_context_reset(llm.ctx)
        eos = llm.token_eos()
        processors = llama_cpp.LogitsProcessorList([_ban_token(eos)]) if request.ignore_eos else None
        stamps: dict[str, int] = {"generate_start": time.perf_counter_ns()}
        finish_reason, count = "length", 0
        step: list[int] = []  # with prompt lookup: this step's tokens, handed over as one chunk where the step ends

        def hand_over() -> None:
            if step:
                channel.put(list(step))
                step.clear()

        if self.lookup is not None:
            self.lookup.begin(len(prompt))
            self.lookup.on_step = hand_over
        try:
            sampling = {"temp": request.temperature, "repeat_penalty": 1.0, **self.request_args}  # --request-arg
            if request.constraint is not None:  # built per request, in this thread: its cost lands in TTFT
                sampling["grammar"] = llamacpp_grammar(request.constraint)
            steps = llm.generate(prompt, reset=True, logits_processor=processors, **sampling)
            for token in steps:
                now = time.perf_counter_ns()
                stamps.setdefault("first_token", now)
                stamps["last_token"] = now
                count += 1
                if self.lookup is None:  # an end-of-generation token too: a step sampled it, as vLLM and hf count it
                    channel.put([token])
                else:
                    step.append(token)
                if not request.ignore_eos and llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    finish_reason = "stop"
                    break
                if count >= request.max_output_tokens:
                    break
                if channel.cancel.is_set():
                    finish_reason = "cancelled"
                    break
        finally:
            hand_over()
            channel.close()
        perf = llama_cpp.llama_perf_context(llm.ctx)
        spec = {"spec_decode": self.lookup.counts(count)} if self.lookup is not None else {}
        return {
            "finish_reason": finish_reason,
            "num_prompt_tokens": len(prompt),
            "num_cached_tokens": cached,
            "engine_metrics": {
                "clock": "perf_counter",
                "timestamps_ns": stamps,
                "num_generation_tokens": count,
                "prompt_eval_ms": perf.t_p_eval_ms,
                "prompt_eval_tokens": perf.n_p_eval,
                "eval_ms": perf.t_eval_ms,
                "eval_tokens": perf.n_eval,
                **spec,
            },
        }


def _ban_token(token_id: int):
    def ban(input_ids, scores):
        scores[token_id] = -float("inf")
        return scores

    return ban


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def lookup_flags(args: dict[str, Any]) -> tuple[str, ...]:
    """Prompt lookup for `llama_cpp.server`: its draft model takes the number of tokens only (n-gram size 2, the
    library's default; a run that sets another size is in-process only)."""
    tokens = args["prompt_lookup_num_pred_tokens"]
    if not tokens:
        return ()
    return ("--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", str(tokens))
