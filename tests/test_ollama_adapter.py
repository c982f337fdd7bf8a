"""The `ollama` adapter end to end against an Ollama-protocol TEST PEER (tests/ollama_peer.py).

The peer is not Ollama: it is real HTTP on 127.0.0.1 with Ollama's NDJSON protocol and fields, and
its tokens and timings come from llama.cpp running the GGUF the adapter exported and created.
"""

import asyncio

import pytest

pytest.importorskip("ollama")
pytest.importorskip("llama_cpp")

from compare.analysis.checks import cell_warnings  # noqa: E402
from compare.analysis.metrics import summarize  # noqa: E402
from compare.run.runner import closed_loop  # noqa: E402
from engines.base import EngineUnavailable  # noqa: E402
from engines.ollama_client import OllamaEngine  # noqa: E402
from tests.ollama_peer import PEER_VERSION, OllamaTestPeer  # noqa: E402
from workloads.plan import plan_scenario  # noqa: E402
from workloads.scenario_files import apply_overrides, load_scenario  # noqa: E402

pytestmark = pytest.mark.engine


@pytest.fixture
def cache_env(monkeypatch, model_cache):
    monkeypatch.setenv("ENGINEBENCH_CACHE", str(model_cache))


@pytest.fixture(scope="module")
def requests(llama3_tokenizer):
    scenario = apply_overrides(load_scenario("smoke"), False, {"concurrency": (1,), "num_requests": 3})
    return plan_scenario(scenario, llama3_tokenizer, 8192)[0].requests


def run(peer_kwargs, tiny_llama3, requests, tmp_path, engine_args=None):
    async def go():
        with OllamaTestPeer(tmp_path, **peer_kwargs) as peer:
            engine = OllamaEngine(tiny_llama3, {"host": peer.host, **(engine_args or {})})
            await engine.start()
            records = await closed_loop(engine, requests, 1, timeout_s=60)
            return engine.describe(), records, peer.requests

    return asyncio.run(go())


def test_streams_one_timestamp_per_token_with_exact_prompt_and_length(cache_env, tiny_llama3, requests, tmp_path):
    description, records, seen = run({}, tiny_llama3, requests, tmp_path)
    assert description.model["quantization"] == "F16" and PEER_VERSION in description.version
    assert description.engine_args["server"]["ps"][0]["size"] > 0
    for r in records:
        assert r.ok, r.error
        assert r.output_tokens == r.target_output_tokens == len(r.chunk_ns) == 16
        assert r.prompt_tokens_reported == r.prompt_tokens == 32  # raw text re-encodes exactly
        assert r.engine["eval_count"] == 16 and r.engine["token_count_mismatches"] == []
        assert set(r.engine["durations_ns"]) == {"load", "prefill", "decode", "total"}
    generate = [s for s in seen if s["path"] == "/api/generate" and s.get("stream")]
    assert all(
        s["raw"] is True and s["options"]["num_ctx"] == 8192 and s["options"]["num_predict"] == 16 for s in generate
    )


def test_chat_mode_uses_api_chat(cache_env, tiny_llama3, requests, tmp_path):
    _, records, seen = run({}, tiny_llama3, requests[:1], tmp_path, {"mode": "chat"})
    assert records[0].ok and records[0].output_tokens == 16
    assert any(s["path"] == "/api/chat" for s in seen)


def test_truncation_and_early_stops_are_flagged(cache_env, tiny_llama3, requests, tmp_path):
    _, records, _ = run({"ignore_num_ctx_above": 20, "early_stop_after": 5}, tiny_llama3, requests, tmp_path)
    warnings = cell_warnings(records, summarize(records), {"concurrency": 1, "prompt_mode": "distinct"}, {}, [])
    assert all(r.prompt_tokens_reported == 20 and r.output_tokens == 5 for r in records)
    assert any("engine counted 20 tokens for a 32-token prompt" in w for w in warnings)
    assert any("early stop: 3 requests ended before 16 tokens (finish_reason stop)" in w for w in warnings)


def test_an_error_line_from_the_server_fails_the_request(cache_env, tiny_llama3, requests, tmp_path):
    _, records, _ = run({"error_after": 2}, tiny_llama3, requests[:1], tmp_path)
    assert not records[0].ok and "simulated runner failure" in records[0].error
    assert records[0].output_tokens == 2


def test_connection_refused_is_one_line_naming_the_fix(tiny_llama3):
    engine = OllamaEngine(tiny_llama3, {"host": "http://127.0.0.1:9"})
    with pytest.raises(
        EngineUnavailable,
        match=r"^no Ollama server at http://127.0.0.1:9; start `ollama serve` or use --engine llamacpp$",
    ):
        asyncio.run(engine.start())


def test_cli_exit_2_when_no_server(model_cache, tmp_path):
    from tests.conftest import ROOT, run_cli

    result = run_cli(
        ["--engine", "ollama", "--engine-arg", "host=http://127.0.0.1:9", "--out", str(tmp_path)], model_cache, ROOT
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: no Ollama server at http://127.0.0.1:9; start `ollama serve` or use --engine llamacpp"
    )


def test_ollama_tags_need_a_tokenizer(model_cache, tmp_path):
    from tests.conftest import ROOT, run_cli

    result = run_cli(["--engine", "ollama", "--model", "ollama:llama3.1:8b", "--out", str(tmp_path)], model_cache, ROOT)
    assert result.returncode == 2 and "needs --tokenizer" in result.stderr
