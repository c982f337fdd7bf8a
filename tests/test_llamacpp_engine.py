"""llama.cpp for real (llama-cpp-python, CPU) on GGUF exports of tiny-llama3 with the real tokenizer."""

import asyncio
import json

import pytest

pytest.importorskip("llama_cpp")

from compare.run.runner import closed_loop  # noqa: E402
from engines.base import Request  # noqa: E402
from engines.gguf import export_gguf  # noqa: E402
from engines.llamacpp_offline import LlamaCppEngine  # noqa: E402
from tests.conftest import ROOT, run_cli  # noqa: E402
from tests.bounds import above

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def cli_runs(model_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("llamacpp-results")
    runs = {}
    for scenario, extra in (
        ("smoke", []),
        ("single", ["--repetitions", "2", "--output-tokens", "32", "--input-tokens", "128,512"]),
    ):
        result = run_cli(["--engine", "llamacpp", "--scenario", scenario, "--out", str(out), *extra], model_cache, ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        (path,) = out.glob(f"llamacpp_{scenario}_*.json")
        runs[scenario] = (json.loads(path.read_text()), result.stdout)
    return runs


def test_gguf_exports_are_cached_with_their_quantization_and_size(tiny_llama3, model_cache):
    sizes, files = {}, {}
    for quant in ("f16", "q8_0", "q4_k_m"):
        path, record = export_gguf(tiny_llama3, quant, model_cache)
        assert path.exists() and path.stat().st_size == record["size_bytes"] and record["quantization"] == quant
        assert path.read_bytes()[:4] == b"GGUF"
        sizes[quant], files[quant] = record["size_bytes"], (path, path.stat().st_mtime_ns, path.stat().st_ino)
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_k_m"]
    again, _ = export_gguf(tiny_llama3, "q8_0", model_cache)  # cached: the same file, not written again
    path, mtime_ns, inode = files["q8_0"]
    assert again == path and (again.stat().st_mtime_ns, again.stat().st_ino) == (mtime_ns, inode)


def test_every_request_has_one_timestamp_per_token_the_exact_length_and_prompt(cli_runs):
    for doc, _ in cli_runs.values():
        assert doc["status"] == "complete" and doc["engine"]["model"]["quantization"] == "f16"
        for cell in doc["cells"]:
            for r in cell["requests"] + cell["warmups"]:
                assert r["ok"] and r["finish_reason"] == "length"
                assert r["output_tokens"] == r["target_output_tokens"] == len(r["chunk_ns"])
                assert r["chunk_tokens"] == [1] * r["output_tokens"]
                assert r["prompt_tokens_reported"] == r["prompt_tokens"] == cell["config"]["prompt_tokens"]


def test_no_request_reuses_the_previous_prompt_outside_prefix_cache(cli_runs):
    for doc, _ in cli_runs.values():
        for cell in doc["cells"]:
            assert all(r["cached_tokens"] == 0 for r in cell["requests"])
            for r in cell["requests"]:  # llama.cpp evaluated the whole prompt itself
                assert r["engine"]["prompt_eval_tokens"] == r["prompt_tokens"]


def test_the_table_shows_the_quantization(cli_runs):
    _, stdout = cli_runs["single"]
    assert "quantization f16" in stdout and "c1-in512" in stdout


def test_prefix_reuse_is_measured_only_when_the_request_expects_it(tiny_llama3, llama3_tokenizer):
    ids = tuple(llama3_tokenizer("Caches make repeated prefixes cheap. " * 60)["input_ids"][:300])
    assert len(ids) == 300

    async def go():
        engine = LlamaCppEngine(tiny_llama3, {})
        await engine.start()
        try:
            reqs = (
                Request("cold", ids, 8, 8),
                Request("reuse", ids, 8, 8, reuse_prefix=True),
                Request("reset", ids, 8, 8),
            )
            return await closed_loop(engine, reqs, 1, timeout_s=60)
        finally:
            await engine.stop()

    cold, reuse, reset = asyncio.run(go())
    assert (cold.cached_tokens, reuse.cached_tokens, reset.cached_tokens) == (0, 299, 0)
    assert reuse.engine["prompt_eval_tokens"] <= 1 and reset.engine["prompt_eval_tokens"] == 300
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 9.452 (headroom 4.23)
    above(cold.ttft_ms / reuse.ttft_ms, 1, 3, "cold TTFT / reused-prefix TTFT (300 prompt tokens vs 1)")


def test_a_prompt_longer_than_n_ctx_is_refused_before_measuring(model_cache, tmp_path):
    result = run_cli(["--engine", "llamacpp", "--engine-arg", "n_ctx=40", "--out", str(tmp_path)], model_cache, ROOT)
    assert (
        result.returncode == 2
        and "cell c1-in32: prompt 32 + output 16 tokens exceed the context of engine 'llamacpp' (40 tokens)"
        in result.stderr
    )
    assert not list(tmp_path.glob("*.json"))
