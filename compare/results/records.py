"""One request's record: what was observed, stored raw, with the figures derived from it.

Times are integer nanoseconds on the harness's `perf_counter` clock. `sent_ns` is the send time as an
offset from the start of the cell's loop; in open loop `scheduled_ns` is when the request was due (same
origin), and TTFT and E2E are measured from it, so a load generator that falls behind cannot hide the
queueing it caused (coordinated omission); `send_lag_ns` is the difference. `chunk_ns` (one receipt time per
chunk that carried tokens) and `end_ns` (end of stream) are offsets from the send. `chunk_tokens[i]` tokens
arrived in chunk i. Chunks are the raw form: tokens of one chunk share its receipt time, and nothing is expanded
per token unless a caller asks for `token_ns`. Batch records (offline engines) have no chunks: `output_tokens`
is the engine's count and `timing` is "batch".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


NS_PER_MS = 1e6


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
    output_ids: list[int] | None = None  # the engine's output ids, in memory for the next turn; stored only if asked
    logprob_tokens: int | None = None  # output tokens the engine returned logprobs for (--request-arg logprobs=K)
    reasoning_tokens: int | None = None  # tokens up to and including the end of reasoning (None: no end seen)
    first_answer_ns: int | None = None  # receipt of the first token after the end of reasoning, after the send
    structured: dict[str, Any] | None = None  # structured output: constraint name, output text, parses, valid
    chunk_sequence: list[int] | None = None  # request arg n > 1: which sequence each chunk belongs to
    output_digest: str | None = None  # the output ids' digest, and 16 bits per token (compare/results/outputs.py)
    output_fingerprint: str | None = None

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
        """(t_last - t_first) / (n - 1): the first and last token times are the first and last chunks'. With n > 1
        sequences, the mean of each sequence's own."""
        values = [
            (ns[-1] - ns[0]) / (sum(tokens) - 1) / NS_PER_MS for ns, tokens in self.sequences() if sum(tokens) > 1
        ]
        return sum(values) / len(values) if values else None

    @property
    def num_sequences(self) -> int:
        return len(set(self.chunk_sequence)) if self.chunk_sequence else 1

    def sequences(self) -> list[tuple[list[int], list[int]]]:
        """(chunk_ns, chunk_tokens) of each sequence: the one stream, or with n > 1 each sequence's chunks apart."""
        if not self.chunk_sequence:
            return [(self.chunk_ns, self.chunk_tokens)]
        split: dict[int, tuple[list[int], list[int]]] = {}
        for t, n, index in zip(self.chunk_ns, self.chunk_tokens, self.chunk_sequence):
            ns, tokens = split.setdefault(index, ([], []))
            ns.append(t)
            tokens.append(n)
        return [split[index] for index in sorted(split)]

    def itl_ns(self) -> np.ndarray:
        """Per-token gaps (itl_samples_ns), each sequence on its own: a gap never spans two sequences."""
        parts = [itl_samples_ns(ns, tokens) for ns, tokens in self.sequences()]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def e2e_ms(self) -> float | None:
        return (self.end_ns + self.send_lag_ns) / NS_PER_MS if self.end_ns is not None else None

    @property
    def finished_at_ns(self) -> int | None:
        """End of stream as an offset from the cell's origin."""
        return self.sent_ns + self.end_ns if self.end_ns is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "error": self.error,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_reported": self.prompt_tokens_reported,
            "prompt_chars": self.prompt_chars,
            "target_output_tokens": self.target_output_tokens,
            "output_tokens": self.output_tokens,
            "output_chars": self.output_chars,
            "cached_tokens": self.cached_tokens,
            "sent_ns": self.sent_ns,
            "end_ns": self.end_ns,
            "chunk_ns": self.chunk_ns,
            "chunk_tokens": self.chunk_tokens,
            "engine": self.engine,
            "timing": self.timing,
            "scheduled_ns": self.scheduled_ns,
            **({"tags": self.tags} if self.tags else {}),
            **({"logprob_tokens": self.logprob_tokens} if self.logprob_tokens is not None else {}),
            **(
                {"reasoning_tokens": self.reasoning_tokens, "first_answer_ns": self.first_answer_ns}
                if self.reasoning_tokens is not None
                else {}
            ),
            **({"structured": self.structured} if self.structured is not None else {}),
            **({"chunk_sequence": self.chunk_sequence} if self.chunk_sequence else {}),
            **(
                {"output_digest": self.output_digest, "output_fingerprint": self.output_fingerprint}
                if self.output_digest is not None
                else {}
            ),
        }

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
            id=data["id"],
            prompt_tokens=data["prompt_tokens"],
            target_output_tokens=data["target_output_tokens"],
            prompt_chars=data.get("prompt_chars"),
            sent_ns=data["sent_ns"],
            end_ns=data.get("end_ns"),
            chunk_ns=chunk_ns,
            chunk_tokens=chunk_tokens,
            output_tokens=data["output_tokens"],
            error=None if data.get("ok", True) else data.get("error") or "failed",
            finish_reason=data.get("finish_reason"),
            prompt_tokens_reported=data.get("prompt_tokens_reported"),
            output_chars=data.get("output_chars"),
            cached_tokens=data.get("cached_tokens"),
            engine=data.get("engine"),
            timing=data.get("timing", "stream"),
            scheduled_ns=data.get("scheduled_ns"),
            tags=data.get("tags"),
            logprob_tokens=data.get("logprob_tokens"),
            reasoning_tokens=data.get("reasoning_tokens"),
            first_answer_ns=data.get("first_answer_ns"),
            structured=data.get("structured"),
            chunk_sequence=data.get("chunk_sequence"),
            output_digest=data.get("output_digest"),
            output_fingerprint=data.get("output_fingerprint"),
        )


def itl_samples_ns(chunk_ns: list[int], chunk_tokens: list[int]) -> np.ndarray:
    """Per-token gaps from per-chunk receipt times: a chunk of k tokens contributes k equal gaps of (its receipt -
    the previous receipt) / k, and extra tokens of the first chunk gaps of 0 (n tokens: n - 1 gaps, summing to
    t_last - t_first)."""
    sizes = np.asarray(chunk_tokens, dtype=np.int64)
    if sizes.sum() < 2:
        return np.empty(0)
    gaps = np.diff(np.asarray(chunk_ns, dtype=np.float64)) / sizes[1:]
    return np.concatenate((np.zeros(sizes[0] - 1), np.repeat(gaps, sizes[1:])))
