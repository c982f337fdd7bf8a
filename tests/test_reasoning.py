"""Reasoning-aware latency: the end of a reasoning block found by its id in the stream, time to the first answer
token beside TTFT, and the known answer from the null engine (a FAKE by design) emitting a think block of k
tokens at a fixed interval."""

import json

import pytest

from compare.results.recorder import StreamRecorder
from engines.base import Chunk, Request, UsageError
from workloads.reasoning import reasoning_end_id
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)
from tests.bounds import near

pytestmark = pytest.mark.unit

END = 128021  # <|reserved_special_token_11|> in the llama3 tokenizer: one token


def recorded(chunks: list[list[int]], end_id: int | None = END):
    recorder = StreamRecorder(Request("r", (1,), 8, 8, reasoning_end_token_id=end_id), origin_ns=0)
    for ids in chunks:
        recorder.on_chunk(Chunk(len(ids), token_ids=ids))
    return recorder.finish(None, None)


def test_the_answer_starts_after_the_end_id_in_the_same_chunk_or_the_next():
    same = recorded([[0], [0, END, 1], [1]])
    assert same.reasoning_tokens == 3 and same.first_answer_ns == same.chunk_ns[1]
    nxt = recorded([[0, 0, END], [1, 1], [1]])
    assert nxt.reasoning_tokens == 3 and nxt.first_answer_ns == nxt.chunk_ns[1]


def test_no_end_or_no_delimiter_gives_no_reasoning_figures():
    unended = recorded([[0], [0], [0]])
    assert unended.reasoning_tokens is None and unended.first_answer_ns is None
    plain = recorded([[0], [END], [1]], end_id=None)
    assert plain.reasoning_tokens is None and "reasoning_tokens" not in plain.to_json()


def test_delimiters_must_be_single_tokens_or_ids(llama3_tokenizer):
    assert reasoning_end_id(("<|reserved_special_token_10|>", "<|reserved_special_token_11|>"), llama3_tokenizer) == END
    assert reasoning_end_id(("1", "4242"), llama3_tokenizer) == 4242
    assert reasoning_end_id((), llama3_tokenizer) is None  # llama3 has no one-token </think>: nothing changes
    with pytest.raises(UsageError, match="is 3 tokens of this model's tokenizer, not one"):
        reasoning_end_id(("<think>", "</think>"), llama3_tokenizer)


def test_a_multi_token_delimiter_exits_2(cli):  # noqa: F811
    assert_usage_error(cli("--engine", "null", "--reasoning-delimiters", "<think>,</think>"), "not one")


def test_the_null_engines_think_block_of_k_tokens_gives_ttfa_k_plus_1_intervals_after_ttft(cli, tmp_path):  # noqa: F811
    k, interval_ms = 5, 20.0
    code, out, err = cli(
        "--engine",
        "null",
        "--scenario",
        "single",
        "--output-tokens",
        "16",
        "--num-requests",
        "4",
        "--engine-arg",
        f"think_tokens={k}",
        "--engine-arg",
        f"interval_ms={interval_ms}",
        "--reasoning-delimiters",
        "<|reserved_special_token_10|>,<|reserved_special_token_11|>",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    for cell in doc["cells"]:
        for r in cell["requests"]:
            assert r["reasoning_tokens"] == k + 1  # the think block and its end delimiter
            gap_ms = (r["first_answer_ns"] - r["chunk_ns"][0]) / 1e6  # token k + 2 after token 1: k + 1 intervals
            # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 116.4 (headroom 0.88)
            near(gap_ms, (k + 1) * interval_ms, 0.25 * (k + 1) * interval_ms, "first answer token after the first (ms)")
        s = cell["summary"]
        assert s["ttfa_ms"]["p50"] > s["ttft_ms"]["p50"] and s["reasoning_unended"] == 0
    assert "time to first answer" in out
