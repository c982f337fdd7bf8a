"""`http`: the same requests over an OpenAI-compatible `/v1/completions` server, streamed (SSE).

Either `--engine-arg endpoint=URL` (an existing server; an API key is read from the environment
variable named by `api_key_env` and never written to results), or `server=vllm|llamacpp|sglang` to
launch that engine's own server on 127.0.0.1 (engines/servers.py; its log goes beside the results).

Prompts go as token-id lists where the server takes them (vLLM, SGLang), else as the exact-length
text (llama.cpp's server). The stream is read by engines/sse_client.py: the SSE events that one read of the
response body brings form one `Chunk` (tokens summed, ids and text joined, the last finish reason kept), so
the runner stamps them once, on receipt, as in-process. Tokens per event are counted exactly from `token_ids` where
the server sends them (vLLM and SGLang, asked with `return_token_ids`); otherwise an event with text counts as one
token (a text-less event that only ends the stream counts none), and the final usage
(`stream_options.include_usage`) cross-checks the total. The counting method, and the numbers of SSE events
and of body reads, are recorded per request.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    EngineUnavailable,
    ModelSource,
    Request,
    ServerLaunch,
    StreamingEngine,
    UsageError,
    resolve_engine_args,
    token_count_mismatch,
)
from engines.constraints import KINDS, http_structured
from engines.prometheus import METRICS, prometheus_values
from engines.servers import COMMANDS, ServerProcess
from engines.sse_client import MalformedStream, SseClient

try:  # 3-4x faster than json.loads on an SSE event (benchmarks/http_client_ceiling.py, docs/scale.md)
    from orjson import JSONDecodeError, loads as json_loads
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare checkout working
    from json import JSONDecodeError, loads as json_loads

DEFAULT_ARGS: dict[str, Any] = {
    "endpoint": "",  # an existing server's base URL; "" launches `server`
    "server": "vllm",  # vllm, llamacpp or sglang: which server to launch (and how to send prompts)
    "api_key_env": "",  # name of an environment variable holding the API key
    "server_args": "",  # extra command-line arguments for the launched server, space separated
    "ready_timeout_s": 600.0,
    "max_connections": 256,  # at least the highest concurrency
    "log_dir": "results",
    "port": 0,  # the launched server's port; 0: a free one
    # the /metrics scrape costs the server (6 ms of a vLLM CPU server's core each): every 50 ms it slowed decode 12%
    "metrics_interval_s": 1.0,  # 0: never scraped
}
TOKEN_ID_PROMPTS = {"vllm", "sglang"}
TOKEN_ID_STREAMS = {"vllm", "sglang"}  # servers that send each chunk's token ids when asked (`return_token_ids`)
RESET_PATHS = {"vllm": ("/reset_prefix_cache", None), "sglang": ("/flush_cache", {"timeout": 30})}
RESET_RETRIES, RESET_RETRY_DELAY_S = 50, 0.2


def reset_outcome(server: str, status: int, body: bytes) -> tuple[bool, bool, str]:
    """(reset done, worth retrying, what the server said) for a cache-reset answer."""
    text = body.decode(errors="replace").strip()[:200]
    if server == "vllm":
        if status != 200:
            return False, False, f"HTTP {status} {text} (vLLM serves it only with VLLM_SERVER_DEV_MODE=1)"
        try:
            answer = json.loads(body) if body.strip() else {}
        except ValueError:
            answer = {}
        success = answer.get("success", True) if isinstance(answer, dict) else True  # older vLLM: an empty 200
        return bool(success), not success, text or "HTTP 200"
    if status == 200:
        return True, False, text
    return False, status == 400, f"HTTP {status} {text}"  # 400: not idle yet, or another flush in progress


class HttpCompletionsEngine(StreamingEngine):
    name = "http"
    # fields of the completions body (OpenAI's, and vLLM's and SGLang's extensions: top_k, min_p, repetition_penalty,
    # stop_token_ids); logprobs are asked for but not counted from the stream; constraints as each server takes them
    constraint_kinds = KINDS
    serves_lora = True  # the adapter by name: vLLM's `model`, SGLang's `lora_path` (the server launched with them)
    request_keys = {
        k: k
        for k in (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "presence_penalty",
            "frequency_penalty",
            "repetition_penalty",
            "seed",
            "logprobs",
            "stop",
            "stop_token_ids",
        )
    }

    @classmethod
    def check_args(cls, given: dict[str, str]) -> dict[str, Any]:
        args = resolve_engine_args("http", given, DEFAULT_ARGS)
        if args["metrics_interval_s"] < 0:
            raise UsageError("engine 'http': metrics_interval_s must be >= 0 (0: never scrape /metrics)")
        return args

    def __init__(
        self, model: ModelSource | None, engine_args: dict[str, str] | None = None, launch: ServerLaunch | None = None
    ):
        """`launch`: an in-process engine's `http_server()`, for --mode http/both."""
        self.args = self.check_args(engine_args or {})
        self.launch = launch
        self.args["server"] = launch.server if launch is not None else self.args["server"]
        self.telemetry_poll_interval_s = self.args["metrics_interval_s"]
        if self.args["server"] not in ("vllm", "llamacpp", "sglang"):
            raise EngineUnavailable("engine 'http': --engine-arg server must be vllm, llamacpp or sglang")
        self.model_spec = model
        self.server: ServerProcess | None = None
        self.base_url = self.args["endpoint"].rstrip("/")
        self.served_model: str | None = None
        self._client: httpx.AsyncClient | None = None  # control calls: models, metrics, cache reset
        self._sse: SseClient | None = None  # the measured streams

    def server_process(self) -> ServerProcess:
        """The server this engine launches (not started): an in-process engine's twin (`--mode http`) gets that
        engine's args as flags (`self.launch`); `--engine http --engine-arg server=X` gets only `server_args`."""
        launch = self.launch or ServerLaunch(self.args["server"], self._server_model(), ())
        return ServerProcess(
            COMMANDS[self.args["server"]],
            launch.model,
            Path(self.args["log_dir"]) / f"server-{self.args['server']}.log",
            extra_args=(*launch.flags, *self.args["server_args"].split()),
            port=self.args["port"] or None,
            ready_timeout_s=self.args["ready_timeout_s"],
            env={**launch.env, "VLLM_SERVER_DEV_MODE": "1"},  # vLLM serves /reset_prefix_cache only in dev mode
        )

    async def start(self) -> None:
        if not self.base_url:
            self.server = self.server_process()
            await self.server.start()
            self.base_url = self.server.url
        headers = {}
        if self.args["api_key_env"]:
            key = os.environ.get(self.args["api_key_env"])
            if not key:
                raise EngineUnavailable(f"engine 'http': environment variable {self.args['api_key_env']} is not set")
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(
            max_connections=self.args["max_connections"], max_keepalive_connections=self.args["max_connections"]
        )
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits, timeout=None)
        self._sse = SseClient(self.base_url, headers, max_idle=self.args["max_connections"])
        try:
            models = (await self._client.get("/v1/models")).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineUnavailable(f"no OpenAI-compatible server at {self.base_url} ({type(exc).__name__})") from None
        self.served_model = models["data"][0]["id"]

    def _server_model(self) -> str:
        if self.args["server"] == "llamacpp":
            from engines.gguf import model_gguf

            return str(model_gguf(self.model_spec, "", self.model_spec.cache_dir)[0])
        return str(self.model_spec.path)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._sse is not None:
            await self._sse.aclose()
            self._sse = None
        if self.server is not None:
            self.server.stop()

    async def reset_cache(self) -> dict[str, Any]:
        """vLLM: POST /reset_prefix_cache (dev mode), which answers 200 {"success": false} while blocks are still
        held; SGLang: POST /flush_cache?timeout=30 (waits for an idle scheduler), which answers 400 while it is
        not idle or another flush runs. Either is retried briefly; then it fails loudly. llama.cpp has none."""
        server = self.args["server"]
        if server not in RESET_PATHS:
            raise RuntimeError("llama.cpp's server has no cache reset endpoint")
        path, params = RESET_PATHS[server]
        message = ""
        for attempt in range(1, RESET_RETRIES + 1):
            response = await self._client.post(path, params=params)
            done, retry, message = reset_outcome(server, response.status_code, response.content)
            if done:
                return {"attempts": attempt}
            if not retry:
                break
            await asyncio.sleep(RESET_RETRY_DELAY_S)
        raise RuntimeError(f"POST {path} did not reset the cache after {attempt} attempt(s): {message}")

    async def telemetry_snapshot(self) -> dict[str, Any] | None:
        """The server's Prometheus /metrics (vLLM, SGLang with metrics on): running, waiting, KV-cache usage."""
        names = METRICS.get(self.args["server"])
        if names is None or self._client is None:
            return None
        try:
            response = await self._client.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        values = prometheus_values(response.text)
        row = {ours: values[theirs] for ours, candidates in names.items() for theirs in candidates if theirs in values}
        return row or None

    def describe(self) -> EngineDescription:
        return EngineDescription(
            name=self.name,
            version=f"httpx {httpx.__version__}",
            engine_args={
                **{k: v for k, v in self.args.items() if k != "api_key_env"},
                "base_url": self.base_url,
                "launched": self.server.argv if self.server else None,
                "server_startup_s": self.server.startup_s if self.server else None,
                "api_key_from_env": bool(self.args["api_key_env"]),
            },
            model={
                "id": self.model_spec.spec,
                "served_model": self.served_model,
                "architecture": self.model_spec.architecture,
                "dtype": self.model_spec.dtype,
                "quantization": None,
            },
            capabilities=Capabilities(
                continuous_batching=self.args["server"] != "llamacpp",
                prefix_cache=True,
                engine_timestamps=False,
                ignore_eos=self.args["server"] != "llamacpp",
                max_concurrent_requests=1 if self.args["server"] == "llamacpp" else None,
            ),
            notes=[
                "token counting: token_ids per SSE chunk where the server sends them, else one per chunk "
                "cross-checked with the final usage"
            ],
        )

    def use_lora(self, adapters) -> None:  # --engine http: the server given must have been started with them
        if self.args["server"] == "llamacpp":
            raise UsageError("engine 'http' (server llamacpp) serves no LoRA adapters by name; use vllm or sglang")

    def _body(self, request: Request) -> dict[str, Any]:
        by_ids = self.args["server"] in TOKEN_ID_PROMPTS
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": list(request.prompt_token_ids) if by_ids else request.prompt_text,
            "max_tokens": request.max_output_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.args["server"] != "llamacpp":
            body.update(ignore_eos=request.ignore_eos, min_tokens=request.min_new_tokens)
        if self.args["server"] in TOKEN_ID_STREAMS:  # exact counts: SGLang merges queued outputs into one chunk
            body["return_token_ids"] = True
        if request.lora_name is not None:
            body.update(
                {"lora_path": request.lora_name} if self.args["server"] == "sglang" else {"model": request.lora_name}
            )
        body.update(self.request_args)  # --request-arg
        body.update(http_structured(self.args["server"], request.constraint) if request.constraint is not None else {})
        return body

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        tally = _StreamTally()
        body = json.dumps(self._body(request)).encode()
        async for payloads in self._sse.stream("/v1/completions", body):
            chunk = tally.read(payloads)
            if chunk is not None:
                yield chunk
            if tally.error is not None:  # the tokens before it were kept
                raise tally.error
        usage = tally.usage or {}
        yield Chunk(
            0,
            finish_reason=tally.finish,
            num_prompt_tokens=usage.get("prompt_tokens"),
            num_cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            engine_metrics=tally.metrics(),
        )


class _StreamTally:
    """One request's stream: per read, the events' tokens merged into one chunk; over the request, the counts."""

    __slots__ = ("counted", "method", "finish", "usage", "num_events", "num_reads", "done", "error")

    def __init__(self) -> None:
        self.counted, self.method, self.finish, self.usage = 0, "chunks", None, None
        self.num_events = self.num_reads = 0
        self.done = False
        self.error: MalformedStream | None = None

    def read(self, payloads: list[bytes]) -> Chunk | None:
        """The events of one body read as one chunk (None when they carried no token)."""
        self.num_reads += 1
        count, ids, texts, finish = 0, [], [], None
        for data in payloads:
            self.num_events += 1
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                event = json_loads(data)
            except JSONDecodeError:
                self.error = MalformedStream(f"malformed SSE data: {data[:80].decode(errors='replace')!r}")
                break
            if event.get("usage"):
                self.usage = event["usage"]
            for choice in event.get("choices") or ():
                token_ids, text, reason = choice.get("token_ids"), choice.get("text"), choice.get("finish_reason")
                finish = reason or finish
                if token_ids is not None:
                    self.method = "token_ids"
                    count += len(token_ids)
                    ids += token_ids
                elif text or (text is not None and not reason):  # "" mid-stream: a partial character
                    count += 1
                if text:
                    texts.append(text)
        self.finish = finish or self.finish
        if not count:
            return None
        self.counted += count
        return Chunk(count, token_ids=ids or None, text="".join(texts) or None, finish_reason=finish)

    def metrics(self) -> dict[str, Any]:
        metrics = _usage_metrics(self.usage, self.counted, self.method)
        metrics.update(sse_events=self.num_events, sse_reads=self.num_reads, sse_done=self.done)
        return metrics


def _usage_metrics(usage: dict[str, Any] | None, counted: int, method: str) -> dict[str, Any]:
    reported = (usage or {}).get("completion_tokens")
    mismatches = [] if reported in (None, counted) else [token_count_mismatch(-1, "usage", reported, counted)]
    return {"token_counting": method, "usage": usage, "token_count_mismatches": mismatches}
