"""Mooncake-format traces: requests replayed at their recorded times with prompts rebuilt from hash ids.

The format (Mooncake, also read by AIPerf and inference-perf) is JSONL, one object per line:
`timestamp` (ms), `input_length` (prompt tokens), `output_length` (tokens to generate) and `hash_ids`,
one id per 512-token block of the prompt; equal ids mean equal blocks, the last block may be
partial. Other keys are ignored, so public traces load as they are.

A prompt is the tokenizer's BOS ids followed by one 512-id block per hash id, cut to exactly
`input_length` ids. A block is a run of the source corpus's ids from an offset seeded by
(seed, hash id), so prompts read as text from the corpus. Distinct hash ids always get distinct
blocks: a run already given moves to another seeded offset, then to strided runs (every 2nd,
3rd... id). Collisions are resolved in the order blocks are first asked, so the same trace in the
same order gives the same prompts. A prompt longer than its blocks is completed with filler blocks
private to that request. The BOS shifts every block by len(bos_ids) alike, so two prompts whose first
k hash ids are equal share their first len(bos_ids) + 512*k ids.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from engines.base import UsageError

BLOCK_TOKENS = 512
TRACES_DIR = Path(__file__).parent / "traces"
_TRIES_PER_STRIDE = 8  # seeded offsets tried before a block moves to the next stride


@dataclass(frozen=True)
class TraceRequest:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_line(line: str, where: str) -> TraceRequest:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"{where}: not valid JSON ({err.msg}); write one JSON object per line") from None
    if not isinstance(record, dict):
        raise UsageError(f"{where}: must be a JSON object with timestamp, input_length, output_length, hash_ids")
    for key in ("timestamp", "input_length", "output_length", "hash_ids"):
        if key not in record:
            raise UsageError(f"{where}: missing {key!r}; every line needs it")
    timestamp = record["timestamp"]
    if not (isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) and math.isfinite(timestamp)):
        raise UsageError(f"{where}: 'timestamp' must be a finite number of ms")
    for key in ("input_length", "output_length"):
        if not (_is_int(record[key]) and record[key] >= 1):
            raise UsageError(f"{where}: {key!r} must be an int >= 1")
    hash_ids = record["hash_ids"]
    if not (isinstance(hash_ids, list) and all(_is_int(h) for h in hash_ids)):
        raise UsageError(f"{where}: 'hash_ids' must be a list of ints")
    return TraceRequest(float(timestamp), record["input_length"], record["output_length"], tuple(hash_ids))


def load_trace(path, limit: int | None = None) -> list[TraceRequest]:
    """The trace's requests sorted by timestamp (stable); `limit` keeps the first N of them."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"trace file '{path}' does not exist")
    if limit is not None and limit < 1:
        raise UsageError(f"trace limit {limit} must be >= 1")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"trace {path} is not UTF-8 text; write it as JSONL") from None
    requests = [_parse_line(line, f"trace {path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not requests:
        raise UsageError(f"trace {path} has no requests; write one JSON object per line")
    requests.sort(key=lambda request: request.timestamp_ms)
    return requests[:limit]


def arrival_offsets_ns(requests: Sequence[TraceRequest], speedup: float = 1.0) -> list[int]:
    """Due time of each request in ns after the first request's, compressed `speedup` times."""
    if not speedup > 0:
        raise UsageError(f"trace speedup {speedup:g} must be > 0 (1 = recorded pace)")
    if not requests:
        return []
    first_ms = requests[0].timestamp_ms
    return [round((request.timestamp_ms - first_ms) * 1e6 / speedup) for request in requests]


def shared_prefix_tokens(a: tuple, b: tuple) -> int:
    """Length of the common leading run of two id tuples."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class BlockPrompts:
    """Turns trace requests into exact-length prompts whose equal hash ids give equal blocks."""

    def __init__(self, source_ids: Sequence[int], bos_ids: tuple[int, ...], seed: int = 0):
        if len(source_ids) < BLOCK_TOKENS:
            raise UsageError(f"prompt source has {len(source_ids)} ids; trace blocks need at least {BLOCK_TOKENS}")
        self._source_ids = tuple(source_ids)
        self._bos_ids = tuple(bos_ids)
        self._seed = seed
        self._blocks: dict[int, tuple[int, ...]] = {}
        self._given: set[tuple[int, ...]] = set()  # every block handed out, hash blocks and filler alike
        self._runs_tried: set[tuple[int, int]] = set()  # (offset, stride) already given or found a duplicate
        self._fillers_given = 0

    def _run(self, offset: int, stride: int) -> tuple[int, ...]:
        source, size = self._source_ids, len(self._source_ids)
        if stride == 1:
            return (source[offset:] + source[:offset])[:BLOCK_TOKENS]
        return tuple(source[(offset + i * stride) % size] for i in range(BLOCK_TOKENS))

    def _new_block(self, key: str) -> tuple[int, ...]:
        """A block not given before, from offsets seeded by `key`; wider strides once offsets collide."""
        rng = random.Random(f"trace-block:{self._seed}:{key}")
        size = len(self._source_ids)
        for attempt in range(_TRIES_PER_STRIDE * (size - 1)):
            run = (rng.randrange(size), 1 + attempt // _TRIES_PER_STRIDE)
            if run in self._runs_tried:
                continue
            self._runs_tried.add(run)
            block = self._run(*run)
            if block not in self._given:
                self._given.add(block)
                return block
        raise UsageError(f"prompt source ids too repetitive for {len(self._given) + 1} distinct trace blocks")

    def block(self, hash_id: int) -> tuple[int, ...]:
        if hash_id not in self._blocks:
            self._blocks[hash_id] = self._new_block(f"hash:{hash_id}")
        return self._blocks[hash_id]

    def prompt(self, request: TraceRequest) -> tuple[int, ...]:
        body_length = request.input_length - len(self._bos_ids)
        if body_length < 1:
            raise UsageError(
                f"trace request of {request.input_length} tokens leaves no room after {len(self._bos_ids)} BOS ids"
            )
        body = [token for hash_id in request.hash_ids for token in self.block(hash_id)]
        while len(body) < body_length:
            self._fillers_given += 1
            body.extend(self._new_block(f"filler:{self._fillers_given}"))
        return self._bos_ids + tuple(body[:body_length])
