"""One request's record: what was observed, stored raw, with the figures derived from it.

Times are integer nanoseconds on the harness's `perf_counter` clock. `sent_ns` is the send time as an
offset from the start of the cell's loop; in open loop `scheduled_ns` is when the request was due (same
origin), and TTFT and E2E are measured from it, so a load generator that falls behind cannot hide the
queueing it caused (coordinated omission); `send_lag_ns` is the difference. `chunk_ns` (one receipt time per chunk that carried tokens)
and `end_ns` (end of stream) are offsets from the send. `chunk_tokens[i]` tokens arrived in chunk i.
Chunks are the raw form: tokens of one chunk share its receipt time, and nothing is expanded per token
unless a caller asks for `token_ns`. Batch records (offline engines) have no chunks: `output_tokens`
is the engine's count and `timing` is "batch".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable

import numpy as np

from engines.base import Chunk, Request

NS_PER_MS = 1e6
_META_FIELDS = ("finish_reason", "num_prompt_tokens", "num_cached_tokens", "engine_metrics", "num_logprob_tokens")


@dataclass(slots=True)
class RequestRecord:
    id: str
    prompt_tokens: int
    target_output_tokens: int
    prompt_chars: int | None = None
    sent_ns: int = 0
    end_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    output_tokens: int = 0
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens_reported: int | None = None
    output_chars: int | None = None
    cached_tokens: int | None = None
    engine: dict[str, Any] | None = None
    timing: str = "stream"  # "stream": receipt time per chunk; "batch": one call for the whole cell
    scheduled_ns: int | None = None  # open loop: when the request was due, from the cell's origin
    tags: dict[str, int] | None = None  # its place in the workload: group, conversation, turn, trace index
    output_ids: list[int] | None = None  # the engine's output ids, kept in memory for the next turn; never stored
    logprob_tokens: int | None = None  # output tokens the engine returned logprobs for (--request-arg logprobs=K)
    reasoning_tokens: int | None = None  # tokens up to and including the end of reasoning (None: no end seen)
    first_answer_ns: int | None = None  # receipt of the first token after the end of reasoning, after the send
    structured: dict[str, Any] | None = None  # structured output: constraint name, output text, parses, valid

    @property
    def send_lag_ns(self) -> int:
        return self.sent_ns - self.scheduled_ns if self.scheduled_ns is not None else 0

    @property
    def start_ns(self) -> int:
        """Where latency counts from: the due time in open loop, the send in closed loop."""
        return self.scheduled_ns if self.scheduled_ns is not None else self.sent_ns

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_tokens)

    @property
    def token_ns(self) -> list[int]:
        """One receipt time per token (a chunk's tokens share its time); derived, never stored."""
        return [t for t, n in zip(self.chunk_ns, self.chunk_tokens) for _ in range(n)]

    @property
    def ttft_ms(self) -> float | None:
        return (self.chunk_ns[0] + self.send_lag_ns) / NS_PER_MS if self.chunk_ns else None

    @property
    def ttfa_ms(self) -> float | None:
        """Time to the first answer token (after the end of reasoning), from the schedule as TTFT is."""
        return (self.first_answer_ns + self.send_lag_ns) / NS_PER_MS if self.first_answer_ns is not None else None

    @property
    def tpot_ms(self) -> float | None:
        """(t_last - t_first) / (n - 1): the first and last token times are the first and last chunks'."""
        if self.output_tokens < 2 or not self.chunk_ns:
            return None
        return (self.chunk_ns[-1] - self.chunk_ns[0]) / (self.output_tokens - 1) / NS_PER_MS

    @property
    def e2e_ms(self) -> float | None:
        return (self.end_ns + self.send_lag_ns) / NS_PER_MS if self.end_ns is not None else None

    @property
    def finished_at_ns(self) -> int | None:
        """End of stream as an offset from the cell's origin."""
        return self.sent_ns + self.end_ns if self.end_ns is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "ok": self.ok, "error": self.error, "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens, "prompt_tokens_reported": self.prompt_tokens_reported,
            "prompt_chars": self.prompt_chars, "target_output_tokens": self.target_output_tokens,
            "output_tokens": self.output_tokens, "output_chars": self.output_chars, "cached_tokens": self.cached_tokens,
            "sent_ns": self.sent_ns, "end_ns": self.end_ns, "chunk_ns": self.chunk_ns, "chunk_tokens": self.chunk_tokens,
            "engine": self.engine, "timing": self.timing, "scheduled_ns": self.scheduled_ns,
            **({"tags": self.tags} if self.tags else {}),
            **({"logprob_tokens": self.logprob_tokens} if self.logprob_tokens is not None else {}),
            **({"reasoning_tokens": self.reasoning_tokens, "first_answer_ns": self.first_answer_ns}
               if self.reasoning_tokens is not None else {}),
            **({"structured": self.structured} if self.structured is not None else {}),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        """Schema 2 stores `chunk_ns`; schema 1 stored `token_ns` (one per token): its chunk starts are the same."""
        chunk_tokens = list(data.get("chunk_tokens") or [])
        if "chunk_ns" in data:
            chunk_ns = list(data["chunk_ns"])
        else:
            token_ns, chunk_ns, index = data.get("token_ns") or [], [], 0
            for size in chunk_tokens:
                chunk_ns.append(token_ns[index])
                index += size
        return cls(
            id=data["id"], prompt_tokens=data["prompt_tokens"], target_output_tokens=data["target_output_tokens"],
            prompt_chars=data.get("prompt_chars"), sent_ns=data["sent_ns"], end_ns=data.get("end_ns"),
            chunk_ns=chunk_ns, chunk_tokens=chunk_tokens, output_tokens=data["output_tokens"],
            error=None if data.get("ok", True) else data.get("error") or "failed",
            finish_reason=data.get("finish_reason"), prompt_tokens_reported=data.get("prompt_tokens_reported"),
            output_chars=data.get("output_chars"), cached_tokens=data.get("cached_tokens"), engine=data.get("engine"),
            timing=data.get("timing", "stream"), scheduled_ns=data.get("scheduled_ns"), tags=data.get("tags"),
            logprob_tokens=data.get("logprob_tokens"), reasoning_tokens=data.get("reasoning_tokens"),
            first_answer_ns=data.get("first_answer_ns"), structured=data.get("structured"),
        )  # fmt: skip


def itl_samples_ns(chunk_ns: list[int], chunk_tokens: list[int]) -> np.ndarray:
    """Per-token gaps from per-chunk receipt times: a chunk of k tokens contributes k equal gaps of (its receipt -
    the previous receipt) / k, and extra tokens of the first chunk gaps of 0 (n tokens: n - 1 gaps, summing to
    t_last - t_first)."""
    sizes = np.asarray(chunk_tokens, dtype=np.int64)
    if sizes.sum() < 2:
        return np.empty(0)
    gaps = np.diff(np.asarray(chunk_ns, dtype=np.float64)) / sizes[1:]
    return np.concatenate((np.zeros(sizes[0] - 1), np.repeat(gaps, sizes[1:])))


class StreamRecorder:
    """The per-request hot path: one clock read and two appends per chunk; the record is built at the end."""

    __slots__ = ("request", "origin_ns", "scheduled_ns", "sent_ns", "chunk_ns", "chunk_tokens", "output_ids", "texts", "meta",
                 "end_id", "reasoning_tokens", "answer_ns")

    def __init__(self, request: Request, origin_ns: int, scheduled_ns: int | None = None):
        """`scheduled_ns`: open loop, the due time as an offset from `origin_ns`."""
        self.request, self.origin_ns, self.scheduled_ns = request, origin_ns, scheduled_ns
        self.chunk_ns: list[int] = []
        self.chunk_tokens: list[int] = []
        self.output_ids: list[int] = []
        self.texts: list[str] = []
        self.meta: dict[str, Any] = {}
        self.end_id = request.reasoning_end_token_id
        self.reasoning_tokens: int | None = None
        self.answer_ns: int | None = None
        self.sent_ns = perf_counter_ns()

    def on_chunk(self, chunk: Chunk) -> None:
        now = perf_counter_ns()
        if chunk.num_new_tokens:
            self.chunk_ns.append(now)
            self.chunk_tokens.append(chunk.num_new_tokens)
            if chunk.token_ids:
                self.output_ids.extend(chunk.token_ids)
            if chunk.text:
                self.texts.append(chunk.text)
            if self.end_id is not None and self.answer_ns is None:
                self._reasoning(chunk, now)
        if chunk.finish_reason is not None or chunk.engine_metrics is not None or chunk.num_cached_tokens is not None:
            for name in _META_FIELDS:  # later chunks win
                value = getattr(chunk, name)
                if value is not None:
                    self.meta[name] = value

    def _reasoning(self, chunk: Chunk, now: int) -> None:
        """The end of reasoning (its id) and the first answer token after it, which may share its chunk."""
        if self.reasoning_tokens is not None:  # ended in an earlier chunk: this one brings the first answer
            self.answer_ns = now
            return
        ids = chunk.token_ids or ()
        if self.end_id in ids:
            position = ids.index(self.end_id)
            self.reasoning_tokens = sum(self.chunk_tokens) - chunk.num_new_tokens + position + 1
            if position + 1 < chunk.num_new_tokens:
                self.answer_ns = now

    def finish(self, error: str | None, decode: Callable[[list[int]], str] | None) -> RequestRecord:
        end_ns = perf_counter_ns()
        sent = self.sent_ns
        chunk_ns = [t - sent for t in self.chunk_ns]
        request = self.request
        return RequestRecord(
            id=request.request_id, prompt_tokens=request.num_prompt_tokens,
            target_output_tokens=request.max_output_tokens,
            prompt_chars=len(request.prompt_text) if request.prompt_text is not None else None,
            sent_ns=sent - self.origin_ns, end_ns=end_ns - sent, chunk_ns=chunk_ns, chunk_tokens=self.chunk_tokens,
            output_tokens=sum(self.chunk_tokens), error=error, finish_reason=self.meta.get("finish_reason"),
            prompt_tokens_reported=self.meta.get("num_prompt_tokens"), output_chars=self._output_chars(decode),
            cached_tokens=self.meta.get("num_cached_tokens"),
            engine=engine_side(self.meta.get("engine_metrics"), sent, chunk_ns[0] if chunk_ns else None),
            scheduled_ns=self.scheduled_ns, tags=dict(request.tags) if request.tags else None,
            output_ids=self.output_ids if any(key == "turn" for key, _ in request.tags) else None,
            logprob_tokens=self.meta.get("num_logprob_tokens"), reasoning_tokens=self.reasoning_tokens,
            first_answer_ns=self.answer_ns - sent if self.answer_ns is not None else None,
            structured=self._structured(decode) if request.constraint is not None else None,
        )  # fmt: skip

    def _structured(self, decode: Callable[[list[int]], str] | None) -> dict[str, Any]:
        """The constraint's name and the output as text (checked after the cell, off the hot path)."""
        text = decode(self.output_ids) if self.output_ids and decode else "".join(self.texts) if self.texts else None
        return {"constraint": self.request.constraint.name, "text": text}

    def _output_chars(self, decode: Callable[[list[int]], str] | None) -> int | None:
        """Only where the cell asks for characters (`decode` given): the ids decoded, else the engine's text."""
        if decode is None:
            return None
        if self.output_ids:
            return len(decode(self.output_ids))
        return len("".join(self.texts)) if self.texts else None


def batch_records(requests: tuple[Request, ...], outputs: list, sent_ns: int, end_ns: int, error: str | None) -> list[RequestRecord]:
    """Records of one offline batch (`outputs`: BatchOutput per request): every request shares the batch's
    send and end (perf_counter_ns), and has no chunks."""
    records = []
    for index, request in enumerate(requests):
        out = outputs[index] if index < len(outputs) else None
        record = RequestRecord(
            id=request.request_id, prompt_tokens=request.num_prompt_tokens, target_output_tokens=request.max_output_tokens,
            prompt_chars=len(request.prompt_text) if request.prompt_text is not None else None, sent_ns=0,
            end_ns=end_ns - sent_ns, error=error or (None if out else "engine returned no output"), timing="batch",
        )  # fmt: skip
        if out is not None:
            record.output_tokens = out.num_output_tokens
            record.finish_reason = out.finish_reason
            record.prompt_tokens_reported = out.num_prompt_tokens
            record.cached_tokens = out.num_cached_tokens
            record.engine = engine_side(out.engine_metrics, sent_ns, None)
        records.append(record)
    return records


def engine_side(metrics: dict[str, Any] | None, sent_ns: int, first_chunk_ns: int | None) -> dict[str, Any] | None:
    """Engine timestamps on the harness's clock become offsets from send, with a first-token delivery
    lag; stamps on another clock are kept as given, and a disagreement is flagged."""
    if not metrics:
        return None
    engine = {k: v for k, v in metrics.items() if k != "timestamps_ns"}
    stamps = metrics.get("timestamps_ns") or {}
    if not stamps:
        return engine
    if not SAME_CLOCK.get(metrics.get("clock"), False):
        engine["timestamps_ns"], engine["clock_aligned"] = stamps, False
        return engine
    offsets = {name: value - sent_ns for name, value in stamps.items() if value is not None}
    engine["timestamps_ns"], engine["clock_aligned"] = offsets, True
    first = offsets.get("first_token")
    consistent = all(value >= 0 for value in offsets.values())
    if first is not None and first_chunk_ns is not None:
        engine["delivery_lag_ns"] = first_chunk_ns - first
        consistent = consistent and first_chunk_ns >= first
    engine["clock_consistent"] = consistent
    return engine


def _same_clock() -> dict[str, bool]:
    import time

    # "monotonic" counts only where it is perf_counter's clock (Linux: both are CLOCK_MONOTONIC), which holds
    # across processes on one machine
    same = time.get_clock_info("monotonic").implementation == time.get_clock_info("perf_counter").implementation
    return {"perf_counter": True, "monotonic": same}


SAME_CLOCK = _same_clock()
