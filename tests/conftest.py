"""Shared fixtures. Synthetic models are built once per test session into a temporary cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none visible through NVML)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_llama3(model_cache):
    from workloads.models import resolve_model

    return resolve_model("synthetic:tiny-llama3", model_cache)


@pytest.fixture(scope="session")
def tiny_qwen(model_cache):
    from workloads.models import resolve_model

    return resolve_model("synthetic:tiny-qwen", model_cache)


@pytest.fixture(scope="session")
def llama3_tokenizer(tiny_llama3):
    return tiny_llama3.load_tokenizer()


@pytest.fixture(scope="session")
def qwen_tokenizer(tiny_qwen):
    return tiny_qwen.load_tokenizer()


def run_cli(args: list[str], cache: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m compare ARGS` in a subprocess, as a user runs it."""
    env = dict(os.environ, ENGINEBENCH_CACHE=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "compare", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
