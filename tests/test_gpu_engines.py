"""Real GPU runs (marker gpu): skipped without an NVIDIA GPU; run them on a lent H100/H200.

They drive `python -m compare` exactly as a user does, with dummy weights of the real Llama-3.1-8B
shapes and the real Llama-3 tokenizer, and check the per-token records.
"""

import importlib.util
import json

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_smoke_on_the_gpu_with_dummy_llama_3_1_8b(engine, model_cache, tmp_path):
    if importlib.util.find_spec(engine) is None:
        pytest.skip(f"{engine} is not installed here")
    result = run_cli(
        ["--engine", engine, "--scenario", "smoke", "--model", "synthetic:llama-3.1-8b", "--out", str(tmp_path)],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob(f"{engine}_smoke_*.json")
    doc = json.loads(path.read_text())
    assert doc["status"] == "complete" and doc["metadata"]["gpus"]["available"]
    for cell in doc["cells"]:
        assert cell["gpu"]["available"] and cell["gpu"]["num_samples"] > 0
        for r in cell["requests"]:
            assert r["ok"] and r["output_tokens"] == r["target_output_tokens"] == sum(r["chunk_tokens"])
            assert r["prompt_tokens_reported"] == r["prompt_tokens"]
            # engine stamps present, on the harness's clock, and before the harness's receipt
            assert r["engine"]["clock_aligned"] is True and r["engine"]["clock_consistent"] is True


@pytest.mark.parametrize("radix_off", [False, True])
def test_sglang_prefix_cache_with_the_radix_cache_on_and_off(radix_off, model_cache, tmp_path):
    if importlib.util.find_spec("sglang") is None:
        pytest.skip("sglang is not installed here")
    args = [
        "--engine",
        "sglang",
        "--scenario",
        "prefix-cache",
        "--quick",
        "--model",
        "synthetic:llama-3.1-8b",
        "--out",
        str(tmp_path),
        "--engine-arg",
        f"disable_radix_cache={str(radix_off).lower()}",
    ]
    result = run_cli(args, model_cache, ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("sglang_prefix-cache_*.json")
    (cell,) = json.loads(path.read_text())["cells"]
    later = [r["cached_tokens"] for r in cell["requests"][1:]]
    assert cell["requests"][0]["cached_tokens"] == 0
    assert all(c == 0 for c in later) if radix_off else all(c >= 2000 for c in later)
