"""Mooncake-format traces: loading, arrival times, and prompts whose hash ids decide what they share."""

import importlib.util
import math
from pathlib import Path

import pytest

from engines.base import UsageError
from workloads.trace import (
    BLOCK_TOKENS,
    TRACES_DIR,
    BlockPrompts,
    TraceRequest,
    arrival_offsets_ns,
    load_trace,
    shared_prefix_tokens,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = TRACES_DIR / "synthetic-small.jsonl"
SOURCE_IDS = list(range(5000))  # distinct ids, so any two blocks from different offsets differ at once
BOS = (1,)


def _request(hash_ids, input_length, timestamp_ms=0.0):
    return TraceRequest(timestamp_ms, input_length, 16, tuple(hash_ids))


def test_bundled_trace_loads_sorted_with_one_hash_id_per_block():
    requests = load_trace(BUNDLED)
    assert len(requests) == 48
    timestamps = [request.timestamp_ms for request in requests]
    assert timestamps == sorted(timestamps) and timestamps[0] == 0
    for request in requests:
        assert len(request.hash_ids) == math.ceil(request.input_length / BLOCK_TOKENS)
    assert len(load_trace(BUNDLED, limit=5)) == 5


def test_generator_reproduces_the_bundled_trace_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("make_trace", ROOT / "scripts" / "make_trace.py")
    make_trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_trace)
    out = tmp_path / "trace.jsonl"
    assert make_trace.main(["--out", str(out)]) == 0
    assert out.read_bytes() == BUNDLED.read_bytes()


def test_equal_leading_hash_ids_share_exactly_bos_plus_their_blocks():
    prompts = BlockPrompts(SOURCE_IDS, BOS, seed=0)
    a = prompts.prompt(_request([7, 8, 9], 1500))
    b = prompts.prompt(_request([7, 8, 20], 1400))
    c = prompts.prompt(_request([7, 21], 900))
    other_family = prompts.prompt(_request([30, 31], 1000))
    assert shared_prefix_tokens(a, b) == len(BOS) + 2 * BLOCK_TOKENS
    assert shared_prefix_tokens(a, c) == len(BOS) + BLOCK_TOKENS
    assert shared_prefix_tokens(a, other_family) == len(BOS)
    assert a[: len(BOS)] == BOS and a[1 : 1 + BLOCK_TOKENS] == prompts.block(7)


def test_bundled_trace_families_share_only_their_leading_blocks():
    requests = load_trace(BUNDLED)
    prompts = BlockPrompts(SOURCE_IDS, BOS)
    built = [prompts.prompt(request) for request in requests]
    for i in range(len(requests)):
        for j in range(i):
            common = shared_prefix_tokens(requests[i].hash_ids, requests[j].hash_ids)
            expected = min(len(BOS) + BLOCK_TOKENS * common, len(built[i]), len(built[j]))
            assert shared_prefix_tokens(built[i], built[j]) == expected


def test_blocks_are_deterministic_and_distinct_beyond_the_source_offsets():
    short_source = list(range(1000, 1700))  # 700 offsets, fewer than the blocks asked
    prompts = BlockPrompts(short_source, BOS, seed=3)
    blocks = [prompts.block(h) for h in range(1500)]
    assert all(len(block) == BLOCK_TOKENS and set(block) <= set(short_source) for block in blocks)
    assert len(set(blocks)) == 1500
    assert prompts.block(42) == blocks[42]
    again = BlockPrompts(short_source, BOS, seed=3)
    assert [again.block(h) for h in range(1500)] == blocks
    assert BlockPrompts(short_source, BOS, seed=4).block(0) != blocks[0]


@pytest.mark.parametrize("input_length", [3, 513, 700, 1024, 1025, 1536, 2000, 5000])
def test_every_prompt_has_exactly_input_length_ids(input_length):
    prompts = BlockPrompts(SOURCE_IDS, (1, 2), seed=0)
    prompt = prompts.prompt(_request([5, 6, 7], input_length))
    assert len(prompt) == input_length
    assert prompt[:2] == (1, 2)


def test_filler_past_the_hash_blocks_is_private_to_each_request():
    prompts = BlockPrompts(SOURCE_IDS, BOS, seed=0)
    a = prompts.prompt(_request([5], 1800))
    b = prompts.prompt(_request([5], 1800))
    assert len(a) == len(b) == 1800
    assert shared_prefix_tokens(a, b) == len(BOS) + BLOCK_TOKENS
    filler = a[len(BOS) + BLOCK_TOKENS : len(BOS) + 2 * BLOCK_TOKENS]
    assert all(prompts.block(h) != filler for h in range(50))
    assert len(prompts.prompt(_request([], 300))) == 300


def test_prompt_without_room_after_bos_is_refused():
    with pytest.raises(UsageError, match="no room"):
        BlockPrompts(SOURCE_IDS, (1, 2)).prompt(_request([5], 2))
    with pytest.raises(UsageError, match="at least 512"):
        BlockPrompts(list(range(100)), BOS)


def test_arrival_offsets_follow_timestamps_and_speedup_divides_them():
    requests = [_request([1], 600, t) for t in (100.0, 100.0, 350.5, 1100.0, 25_000.25)]
    offsets = arrival_offsets_ns(requests)
    assert offsets == [0, 0, 250_500_000, 1_000_000_000, 24_900_250_000]
    fast = arrival_offsets_ns(requests, speedup=4)
    assert all(isinstance(x, int) and abs(x - base / 4) <= 1 for x, base in zip(fast, offsets))
    with pytest.raises(UsageError, match="speedup"):
        arrival_offsets_ns(requests, speedup=0)


GOOD = '{"timestamp": 0, "input_length": 600, "output_length": 32, "hash_ids": [0, 1], "extra": "ignored"}'


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "not valid JSON"),
        ('{"timestamp": 5, "input_length": 600, "output_length": 32}', "missing 'hash_ids'"),
        (
            '{"timestamp": 5, "input_length": -3, "output_length": 32, "hash_ids": [2]}',
            "'input_length' must be an int >= 1",
        ),
        ('{"timestamp": 5, "input_length": 600, "output_length": 32, "hash_ids": ["a"]}', "'hash_ids' must be a list"),
    ],
)
def test_malformed_line_is_one_line_usage_error_naming_it(tmp_path, bad_line, message):
    path = tmp_path / "t.jsonl"
    path.write_text(f"{GOOD}\n\n{bad_line}\n{GOOD}\n")
    with pytest.raises(UsageError) as caught:
        load_trace(path)
    text = str(caught.value)
    assert "\n" not in text and f"trace {path} line 3: " in text and message in text


def test_missing_or_empty_trace_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_trace(tmp_path / "absent.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(UsageError, match="no requests"):
        load_trace(empty)
    good = tmp_path / "good.jsonl"
    good.write_text(GOOD + "\n")
    assert load_trace(good) == [TraceRequest(0.0, 600, 32, (0, 1))]
