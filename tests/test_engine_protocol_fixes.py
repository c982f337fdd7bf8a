"""What the pinned engines' sources (vllm 0.26.0, sglang 0.5.17) show would go wrong on a GPU lease, fixed and
checked here on CPU: cache resets that the servers refuse while busy, SGLang's merged chunks counted by their
token ids, its cached-token report, its resolved server args, fresh load snapshots, and a duration it never
sends. The servers are FAKES at the protocol level (httpx.MockTransport), answering as those sources do."""

import asyncio
import json

import httpx
import pytest

from engines import http_openai
from engines.base import Request
from engines.http_openai import HttpCompletionsEngine, _StreamTally, reset_outcome
from engines.sglang.args import DEFAULT_ARGS, launch_flags
from engines.sglang_offline import resolved_server_args
from engines.sglang.stream import DURATIONS

pytestmark = pytest.mark.unit


def engine_on_fake_server(server: str, answers: list[tuple[int, bytes]]):
    """An HTTP engine whose control client talks to a FAKE server that gives `answers` in turn."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(status, content=body)

    engine = HttpCompletionsEngine(None, {"endpoint": "http://fake", "server": server})
    engine._client = httpx.AsyncClient(base_url="http://fake", transport=httpx.MockTransport(handler))
    return engine, seen


def test_a_vllm_reset_that_says_success_false_is_retried_until_it_says_true(monkeypatch):
    monkeypatch.setattr(http_openai, "RESET_RETRY_DELAY_S", 0.0)
    busy, done = (200, b'{"success":false}'), (200, b'{"success":true}')
    engine, seen = engine_on_fake_server("vllm", [busy, busy, done])
    assert asyncio.run(engine.reset_cache()) == {"attempts": 3}
    assert [r.url.path for r in seen] == ["/reset_prefix_cache"] * 3


def test_a_vllm_reset_that_never_succeeds_fails_loudly_and_a_missing_endpoint_at_once(monkeypatch):
    monkeypatch.setattr(http_openai, "RESET_RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(http_openai, "RESET_RETRIES", 4)
    engine, seen = engine_on_fake_server("vllm", [(200, b'{"success":false}')])
    with pytest.raises(RuntimeError, match=r"did not reset the cache after 4 attempt\(s\)"):
        asyncio.run(engine.reset_cache())
    engine, seen = engine_on_fake_server("vllm", [(404, b'{"detail":"Not Found"}')])
    with pytest.raises(RuntimeError, match="VLLM_SERVER_DEV_MODE=1"):
        asyncio.run(engine.reset_cache())
    assert len(seen) == 1  # a 404 is not retried


def test_an_sglang_flush_waits_for_idle_and_a_refusal_is_retried(monkeypatch):
    monkeypatch.setattr(http_openai, "RESET_RETRY_DELAY_S", 0.0)
    refused = (400, b"Another flush_cache is already in progress.")
    engine, seen = engine_on_fake_server("sglang", [refused, (200, b"Cache flushed.\n")])
    assert asyncio.run(engine.reset_cache()) == {"attempts": 2}
    assert seen[0].url.path == "/flush_cache" and seen[0].url.params["timeout"] == "30"


def test_reset_answers_are_read_as_each_server_means_them():
    assert reset_outcome("vllm", 200, b"") == (True, False, "HTTP 200")  # an older vLLM: empty 200
    assert reset_outcome("vllm", 200, b'{"success": false}')[:2] == (False, True)
    assert reset_outcome("sglang", 400, b"Flush cache failed.")[:2] == (False, True)
    assert reset_outcome("sglang", 500, b"boom")[:2] == (False, False)


def test_sglang_is_asked_for_token_ids_and_a_merged_chunk_counts_every_token():
    engine = HttpCompletionsEngine(None, {"endpoint": "http://fake", "server": "sglang"})
    engine.served_model = "m"
    assert engine._body(Request("r", (1, 2), 8, 8))["return_token_ids"] is True
    # SGLang 0.5.17 serving_completions: three queued outputs merged into one chunk, its delta token ids attached
    merged = {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": " a b c",
                "logprobs": None,
                "finish_reason": None,
                "matched_stop": None,
                "token_ids": [264, 293, 272],
            }
        ],
    }
    usage = {
        "id": "c1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": 2,
            "completion_tokens": 3,
            "total_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 1},
        },
    }
    tally = _StreamTally()
    chunk = tally.read([json.dumps(merged).encode()])
    assert chunk.num_new_tokens == 3 and chunk.token_ids == [264, 293, 272]
    tally.read([json.dumps(usage).encode(), b"[DONE]"])
    metrics = tally.metrics()
    assert metrics["token_counting"] == "token_ids" and metrics["token_count_mismatches"] == []
    assert tally.usage["prompt_tokens_details"]["cached_tokens"] == 1


def test_sglang_launches_with_its_cache_report_and_fresh_load_snapshots():
    assert DEFAULT_ARGS["enable_cache_report"] is True and DEFAULT_ARGS["load_snapshot_publish_interval"] == 1
    flags = launch_flags({"model_path": "/m", "enable_cache_report": True, "load_snapshot_publish_interval": 1})
    assert "--enable-cache-report" in flags
    assert flags[flags.index("--load-snapshot-publish-interval") + 1] == "1"


def test_sglang_resolved_server_args_are_read_as_its_get_server_info_reads_them():
    from dataclasses import dataclass

    @dataclass
    class FakeServerArgs:  # a FAKE of sglang's ServerArgs: two fields
        tp_size: int = 1
        chunked_prefill_size: int | None = None

    class FakeTokenizerManager:  # a FAKE: control-plane updates on top of the args, as 0.5.17 resolves them
        server_args = FakeServerArgs()

        def resolved_config_dict(self, base):
            return {**base, "chunked_prefill_size": 8192}

    class FakeEngine:
        tokenizer_manager = FakeTokenizerManager()

    resolved = resolved_server_args(FakeEngine())
    assert resolved["resolved_server_args"] == {"tp_size": 1, "chunked_prefill_size": 8192}
    assert resolved["resolved_server_args_source"] == "tokenizer_manager.resolved_config_dict"
    assert resolved_server_args(object())["resolved_server_args_source"].startswith("not available")


def test_no_duration_is_read_that_sglang_0_5_17_never_sends():
    assert "prefill_launch_latency" not in DURATIONS
