"""`ollama`: the official `ollama` Python client (`AsyncClient`) against an Ollama server.

- Streaming `generate(raw=True)`, so the prompt is exactly the harness's prompt text (no template);
  `mode=chat` uses `/api/chat` instead. Options: `num_predict`, temperature 0, `seed`, and `num_ctx`
  always set (Ollama otherwise truncates long prompts silently); `num_ctx` is checked against every
  planned prompt before anything is measured.
- Each streamed line is one runner response, counted as one token; the final line's `eval_count` is
  the server's own count, and a disagreement is recorded. `prompt_eval_count` is checked against the
  target (a lower count means truncation, or Ollama's always-on prompt cache). Ollama has no
  ignore_eos: early `done_reason: stop` is recorded and warned about.
- Engine-side durations from the final line: load, prompt eval (prefill), eval (decode), total.
- `--model synthetic:<preset>` (or a local HF folder) is exported to GGUF and created on the server
  (`create_blob` + `create`), so the same weights run in `llamacpp` and `ollama`; `--model
  ollama:<tag>` uses a model the server already has.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
from typing import Any, AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    EngineUnavailable,
    ModelSource,
    Request,
    StreamingEngine,
    capped_context,
    token_count_mismatch,
)
from engines.engine_args import annotation_text, resolve_args
from engines.gguf import model_gguf

DEFAULT_ARGS: dict[str, Any] = {
    "host": "",  # "": $OLLAMA_HOST, else http://127.0.0.1:11434
    "mode": "generate",  # or "chat"
    "num_ctx": 0,  # 0: the model's context, capped at 8192
    "seed": 0,
    "keep_alive": "10m",
    "quant": "",  # GGUF when the harness gives Ollama the model: "" the shipped file of a pypi: model, else f16
    "num_parallel": 1,  # the server's OLLAMA_NUM_PARALLEL (default 1): requests it serves at once
}


def options_fields() -> dict[str, str]:
    """The `options` keys of the installed Ollama client (`ollama.Options`), with their annotations."""
    from ollama._types import Options

    return {name: annotation_text(field.annotation) for name, field in Options.model_fields.items()}


class OllamaEngine(StreamingEngine):
    context_arg = "num_ctx"
    # `options` keys of Ollama's API (ollama.Options)
    request_keys = {
        **{
            k: k
            for k in ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "seed", "stop")
        },
        "repetition_penalty": "repeat_penalty",
    }

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_args("ollama", given, DEFAULT_ARGS, options_fields())

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        import ollama  # noqa: F401  (a missing client fails here, before anything is measured)

        # ours cast to our defaults' types; any Options key passed through, typed
        self.args, self.passed_through = resolve_args("ollama", engine_args or {}, DEFAULT_ARGS, options_fields())
        if self.args["mode"] not in ("generate", "chat"):
            raise EngineUnavailable("engine 'ollama': --engine-arg mode must be generate or chat")
        self.host = self.args["host"] or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self.model_spec = model
        self.num_ctx = capped_context(self.args["num_ctx"], model)
        self.max_context_tokens = self.num_ctx
        packaged = (model.info or {}).get("packaged_model")
        quant = self.args["quant"] or ("shipped" if packaged else "f16")
        self.tag = model.ollama_tag or f"enginebench/{(model.info.get('preset') or packaged or 'model')}-{quant}"
        self.server: dict[str, Any] = {}
        self._client = None  # ollama.AsyncClient

    async def start(self) -> None:
        import ollama

        self._client = ollama.AsyncClient(host=self.host)
        try:
            version = (await self._client._request_raw("GET", "/api/version")).json().get("version")
        except (ConnectionError, ollama.RequestError, OSError) as exc:
            raise EngineUnavailable(
                f"no Ollama server at {self.host}; start `ollama serve` or use --engine llamacpp"
            ) from exc
        self.server["version"] = version
        if self.model_spec.ollama_tag is None:
            await self._create_from_gguf()
        show = await self._client.show(self.tag)
        self.server["show"] = {"details": _plain(show.details), "modified_at": str(show.modified_at)}
        await self._client.generate(model=self.tag, prompt="", keep_alive=self.args["keep_alive"])  # load it
        running = await self._client.ps()
        self.server["ps"] = [_plain(m) for m in running.models if m.model == self.tag or m.name == self.tag]

    async def _create_from_gguf(self) -> None:
        path, record = await asyncio.to_thread(
            model_gguf, self.model_spec, self.args["quant"], self.model_spec.cache_dir
        )
        digest = await self._client.create_blob(path)
        await self._client.create(model=self.tag, files={path.name: digest})
        self.server["created_from"] = {"gguf": str(path), "digest": digest, **record}

    async def stop(self) -> None:
        self._client = None

    async def reset_cache(self) -> None:
        return None  # Ollama has no cache flush; warmups and distinct prompts keep reuse visible instead

    def describe(self) -> EngineDescription:
        details = self.server.get("show", {}).get("details", {})
        return EngineDescription(
            name="ollama",
            version=f"server {self.server.get('version')}, client {importlib.metadata.version('ollama')}",
            engine_args={
                **self.args,
                "host": self.host,
                "num_ctx": self.num_ctx,
                "tag": self.tag,
                "server": self.server,
                "options": dict(self.passed_through),
            },
            model={
                "id": self.model_spec.spec,
                "ollama_tag": self.tag,
                "architecture": details.get("family"),
                "dtype": details.get("quantization_level"),
                "quantization": details.get("quantization_level"),
                "parameter_size": details.get("parameter_size"),
                "format": details.get("format"),
            },
            capabilities=Capabilities(
                continuous_batching=self.args["num_parallel"] > 1,
                prefix_cache=True,
                engine_timestamps=False,
                ignore_eos=False,
                max_concurrent_requests=self.args["num_parallel"],
            ),
            notes=[
                "OLLAMA_NUM_PARALLEL (default 1) limits how many requests the server runs at once; the rest queue "
                "inside it. Set --engine-arg num_parallel to the server's value.",
                "no ignore_eos in Ollama: early stops are recorded; prompt cache reuse is always on",
            ],
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        options = {
            "num_predict": request.max_output_tokens,
            "temperature": request.temperature,
            "seed": self.args["seed"],
            "num_ctx": self.num_ctx,
            **self.passed_through,
            **self.request_args,
        }
        if self.args["mode"] == "chat":
            messages = [{"role": "user", "content": request.prompt_text}]
            stream = await self._client.chat(
                model=self.tag, messages=messages, stream=True, options=options, keep_alive=self.args["keep_alive"]
            )
        else:
            stream = await self._client.generate(
                model=self.tag,
                prompt=request.prompt_text,
                raw=True,
                stream=True,
                options=options,
                keep_alive=self.args["keep_alive"],
            )
        counted = 0
        async for part in stream:
            if not part.done:
                counted += 1
                text = part.message.content if self.args["mode"] == "chat" else part.response
                yield Chunk(1, text=text)
                continue
            yield Chunk(
                0,
                finish_reason=part.done_reason,
                num_prompt_tokens=part.prompt_eval_count,
                engine_metrics=_final_metrics(part, counted),
            )


def _final_metrics(part, counted: int) -> dict[str, Any]:
    durations = {
        "load": part.load_duration,
        "prefill": part.prompt_eval_duration,
        "decode": part.eval_duration,
        "total": part.total_duration,
    }
    mismatches = []
    if part.eval_count is not None and part.eval_count != counted:
        mismatches.append(token_count_mismatch(-1, "eval_count", part.eval_count, counted))
    return {
        "durations_ns": {k: v for k, v in durations.items() if v is not None},
        "eval_count": part.eval_count,
        "prompt_eval_count": part.prompt_eval_count,
        "token_count_mismatches": mismatches,
    }


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value
