"""How records are made: the per-request hot path of a stream (`StreamRecorder`), an offline batch's records, and
engine-side timestamps brought onto the harness's clock (compare/results/records.py: what a record holds)."""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Callable

from compare.results.outputs import output_digest, output_fingerprint
from compare.results.records import RequestRecord
from engines.base import Chunk, Request

_META_FIELDS = ("finish_reason", "num_prompt_tokens", "num_cached_tokens", "engine_metrics", "num_logprob_tokens")


class StreamRecorder:
    """The per-request hot path: one clock read and two appends per chunk; the record is built at the end."""

    __slots__ = (
        "request",
        "origin_ns",
        "scheduled_ns",
        "sent_ns",
        "chunk_ns",
        "chunk_tokens",
        "output_ids",
        "texts",
        "meta",
        "end_id",
        "reasoning_tokens",
        "answer_ns",
        "chunk_sequence",
    )

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
        self.chunk_sequence: list[int] | None = (
            None  # n > 1: each chunk's sequence, from the first chunk of a second one
        )
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
            if chunk.sequence or self.chunk_sequence is not None:  # n > 1: the chunks so far were sequence 0's
                if self.chunk_sequence is None:
                    self.chunk_sequence = [0] * (len(self.chunk_ns) - 1)
                self.chunk_sequence.append(chunk.sequence)
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
            id=request.request_id,
            prompt_tokens=request.num_prompt_tokens,
            target_output_tokens=request.max_output_tokens,
            prompt_chars=len(request.prompt_text) if request.prompt_text is not None else None,
            sent_ns=sent - self.origin_ns,
            end_ns=end_ns - sent,
            chunk_ns=chunk_ns,
            chunk_tokens=self.chunk_tokens,
            output_tokens=sum(self.chunk_tokens),
            error=error,
            finish_reason=self.meta.get("finish_reason"),
            prompt_tokens_reported=self.meta.get("num_prompt_tokens"),
            output_chars=self._output_chars(decode),
            cached_tokens=self.meta.get("num_cached_tokens"),
            engine=engine_side(self.meta.get("engine_metrics"), sent, chunk_ns[0] if chunk_ns else None),
            scheduled_ns=self.scheduled_ns,
            tags=dict(request.tags) if request.tags else None,
            output_ids=self.output_ids if any(key == "turn" for key, _ in request.tags) else None,
            logprob_tokens=self.meta.get("num_logprob_tokens"),
            reasoning_tokens=self.reasoning_tokens,
            first_answer_ns=self.answer_ns - sent if self.answer_ns is not None else None,
            structured=self._structured(decode) if request.constraint is not None else None,
            chunk_sequence=self.chunk_sequence,
            output_digest=output_digest(self.output_ids) if self.output_ids else None,
            output_fingerprint=output_fingerprint(self.output_ids) if self.output_ids else None,
        )

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


def batch_records(
    requests: tuple[Request, ...], outputs: list, sent_ns: int, end_ns: int, error: str | None
) -> list[RequestRecord]:
    """Records of one offline batch (`outputs`: BatchOutput per request): every request shares the batch's
    send and end (perf_counter_ns), and has no chunks."""
    records = []
    for index, request in enumerate(requests):
        out = outputs[index] if index < len(outputs) else None
        record = RequestRecord(
            id=request.request_id,
            prompt_tokens=request.num_prompt_tokens,
            target_output_tokens=request.max_output_tokens,
            prompt_chars=len(request.prompt_text) if request.prompt_text is not None else None,
            sent_ns=0,
            end_ns=end_ns - sent_ns,
            error=error or (None if out else "engine returned no output"),
            timing="batch",
        )
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
