"""The engine contract: what the runner drives, and what an engine must tell about itself.

The runner timestamps every chunk on receipt with `time.perf_counter_ns()`; an engine never
timestamps for the harness. Engine-side timings (when an engine has them) travel separately in
`Chunk.engine_metrics` and are kept apart from the harness's own clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable


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

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


@dataclass(slots=True)
class Chunk:
    """What one step of an engine's stream delivered.

    `num_new_tokens` may be 0 (a final chunk carrying only `finish_reason`), 1, or several when the
    engine merges tokens. The optional fields are filled where the engine gives them; the runner
    keeps the last non-None value of the per-request fields.
    """

    num_new_tokens: int
    token_ids: list[int] | None = None
    text: str | None = None
    finish_reason: str | None = None
    num_prompt_tokens: int | None = None  # as the engine counted them
    num_cached_tokens: int | None = None  # prompt tokens served from the prefix cache
    engine_metrics: dict[str, Any] | None = None  # engine-side timings, clock named in the keys


@dataclass(frozen=True)
class Capabilities:
    continuous_batching: bool
    prefix_cache: bool
    engine_timestamps: bool
    ignore_eos: bool
    max_concurrent_requests: int | None = None  # None: limited only by the engine's memory
    offline_batch: bool = False  # runs whole cells through generate_batch(); no per-token timestamps


@dataclass
class EngineDescription:
    """What `describe()` returns; it goes verbatim into the results file."""

    name: str
    version: str
    engine_args: dict[str, Any]
    model: dict[str, Any]  # id, architecture, dtype, quantization, ...
    capabilities: Capabilities
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Engine(Protocol):
    """Every engine is constructed as `Engine(model, engine_args)` and then driven through this.

    Optional: `max_context_tokens` (int) is checked against every planned prompt before measuring
    (`context_arg` names the engine arg that raises it);
    `generate_batch(requests)` makes the runner hand whole cells over at once (offline batch)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def generate(self, request: Request) -> AsyncIterator[Chunk]: ...

    async def reset_cache(self) -> None: ...

    def describe(self) -> EngineDescription: ...


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing measured is lost."""


class EngineUnavailable(UsageError):
    """The engine cannot run here (package missing, no GPU, model unsupported)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def resolve_engine_args(engine: str, given: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Cast `--engine-arg k=v` strings to the type of each default; unknown keys are a usage error."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UsageError(
            f"engine {engine!r} has no engine arg {unknown[0]!r}; valid: {', '.join(sorted(defaults))}"
        )
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
    except ValueError:
        kind = type(default).__name__
        raise UsageError(f"engine {engine!r}: --engine-arg {key}={raw!r} is not a valid {kind}") from None
    return raw


def require_local_model(engine: str, model, needs_weights: bool = True) -> None:
    """Engines that load a model folder refuse `ollama:<tag>` models, and config-only presets if they need weights."""
    if model.path is None:
        raise EngineUnavailable(f"engine {engine!r} needs a local model folder, not {model.spec!r}")
    if needs_weights and not model.has_weights:
        raise EngineUnavailable(
            f"{model.spec!r} has config and tokenizer only; --engine {engine} needs weights "
            "(use synthetic:tiny-llama3, or an engine that loads dummy weights on a GPU)"
        )
