"""Request features as `--request-arg KEY=VALUE` (`ENGINE.KEY=VALUE` for one engine): sampling parameters,
logprobs, stops and detokenization, typed here once and passed through each engine's own request type.

Every request is greedy, one sequence, no logprobs, no stop by default; a request arg changes that for every
request of the run. Each engine names the keys it passes and what it calls them (`request_keys` on the class:
vLLM `SamplingParams` fields, SGLang's sampling dict, `Llama.__call__` kwargs, hf `generate` kwargs, the
OpenAI body); a key it does not pass is a usage error naming the engine, before anything runs.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from engines.base import UsageError
from engines.engine_args import parse_typed

# Our key -> its type (engines/engine_args.py parse_typed: `stop=["\n\n"]` as JSON, or one string)
REQUEST_KEYS: dict[str, str] = {
    "temperature": "float",
    "top_p": "float",
    "top_k": "int",
    "min_p": "float",
    "presence_penalty": "float",
    "frequency_penalty": "float",
    "repetition_penalty": "float",
    "seed": "int | None",
    "n": "int",
    "logprobs": "int | None",
    "prompt_logprobs": "int | None",
    "stop": "list[str]",
    "stop_token_ids": "list[int]",
    "detokenize": "bool",
    "beam_width": "int",
}

# n > 1 is measured only where the engine streams each sequence's chunks apart (`stamps_sequences` on its class):
# elsewhere a clear error rather than a figure that counts one sequence of n
N_ENGINES = "vllm (in-process) and null"
SEQUENCE_KEYS = ("n", "beam_width")  # sequences (beams) per request: >= 1, and 1 is the default left unsent


def typed_request_args(engine: str, given: dict[str, str], passed: dict[str, str]) -> dict[str, Any]:
    """`given` typed and checked: known keys, passed by this engine, values that parse; else a UsageError."""
    typed: dict[str, Any] = {}
    for key, raw in given.items():
        if key not in REQUEST_KEYS:
            near = difflib.get_close_matches(key, sorted(REQUEST_KEYS), n=3, cutoff=0.0)
            raise UsageError(f"no request arg {key!r}; nearest: {', '.join(near)} (docs/features.md)")
        if key not in passed:
            supported = ", ".join(sorted(passed)) or "none"
            raise UsageError(f"engine {engine!r} does not take request arg {key!r}; it takes: {supported}")
        annotation = REQUEST_KEYS[key]
        if annotation.startswith("list[") and not raw.strip().startswith("["):
            raw = json.dumps([raw]) if annotation == "list[str]" else f"[{raw}]"  # one stop string, or ids "1,2"
        value = parse_typed(engine, key, raw, annotation)
        if key in SEQUENCE_KEYS and value < 1:
            raise UsageError(f"request arg {key}={raw}: {key} counts sequences (beams) per request, >= 1")
        typed[key] = value
    return typed


def engine_request_args(engine_class, typed: dict[str, Any], engine: str = "") -> dict[str, Any]:
    """Our keys renamed to what this engine's request type calls them (n=1 is the default and not passed)."""
    n = typed.get("n", 1)
    if n != 1 and not engine_class.stamps_sequences:
        raise UsageError(
            f"request arg n={n}: engine {engine or engine_class.__name__!r} streams one sequence per request here; "
            f"n > 1 is stamped sequence by sequence on {N_ENGINES}"
        )
    names = engine_class.request_keys
    return {names[key]: value for key, value in typed.items() if not (key in SEQUENCE_KEYS and value == 1)}
