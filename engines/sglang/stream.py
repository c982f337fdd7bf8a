"""SGLang's stream, chunk by chunk: new tokens from its cumulative (or incremental) `output_ids` and
`completion_tokens`, and its wall-clock stamps aligned to the harness's perf_counter (engines/sglang_offline.py
has the source notes)."""

from __future__ import annotations

from typing import Any

from engines.base import Chunk, token_count_mismatch

# meta_info stamp -> our name; all wall-clock epoch seconds
WALL_STAMPS = {
    "request_received_ts": "received",
    "forward_entry_time": "scheduled",
    "prefill_finished_time": "first_token",
    "response_sent_to_client_ts": "first_chunk_sent",
    "request_finished_ts": "finished",
}
# meta_info durations (seconds); 0.5.17 has no prefill_launch_latency (the prefill comes from the stamps instead)
DURATIONS = {"queue_time": "queue", "e2e_latency": "e2e"}


def finish_reason_name(reason: Any) -> str | None:
    if reason is None:
        return None
    if isinstance(reason, dict):
        return str(reason.get("type"))
    return str(reason)


class StreamAccounting:
    """Turns one request's SGLang chunks into harness Chunks; exact on token counts."""

    def __init__(self, incremental: bool, wall_minus_perf_ns: int):
        self.incremental = incremental
        self.wall_minus_perf_ns = wall_minus_perf_ns
        self.completion_tokens = 0
        self.num_ids = 0
        self.text_len = 0
        self.num_chunks = 0
        self.mismatches: list[dict[str, int]] = []
        self.stamps_ns: dict[str, int] = {}

    def convert(self, out: dict[str, Any]) -> Chunk:
        meta = out.get("meta_info") or {}
        ids = out.get("output_ids") or []
        new_ids = list(ids) if self.incremental else list(ids[self.num_ids :])  # live list: slice on arrival
        self.num_ids += len(new_ids)
        completion = meta.get("completion_tokens")
        new_tokens = completion - self.completion_tokens if completion is not None else len(new_ids)
        if completion is not None:
            if new_tokens != len(new_ids):
                self.mismatches.append(
                    token_count_mismatch(self.num_chunks, "completion_tokens", new_tokens, len(new_ids))
                )
            self.completion_tokens = completion
        self.num_chunks += 1
        self._collect_stamps(meta)
        text = out.get("text")
        if text is not None and not self.incremental:
            text, self.text_len = text[self.text_len :], len(text)
        reason = meta.get("finish_reason")
        if reason is None:
            return Chunk(new_tokens, token_ids=new_ids, text=text)
        return Chunk(
            new_tokens,
            token_ids=new_ids,
            text=text,
            finish_reason=finish_reason_name(reason),
            num_prompt_tokens=meta.get("prompt_tokens"),
            num_cached_tokens=meta.get("cached_tokens"),
            engine_metrics=self._engine_metrics(meta, reason),
        )

    def _collect_stamps(self, meta: dict[str, Any]) -> None:
        for key, name in WALL_STAMPS.items():
            value = meta.get(key)
            if value and name not in self.stamps_ns:  # first report wins (first chunk, first token)
                self.stamps_ns[name] = int(value * 1e9) - self.wall_minus_perf_ns

    def _engine_metrics(self, meta: dict[str, Any], reason: Any) -> dict[str, Any]:
        durations = {name: int(meta[key] * 1e9) for key, name in DURATIONS.items() if meta.get(key) is not None}
        stamps = self.stamps_ns
        if "first_token" in stamps and "scheduled" in stamps:
            durations["prefill"] = stamps["first_token"] - stamps["scheduled"]
        if "finished" in stamps and "first_token" in stamps:
            durations["decode"] = stamps["finished"] - stamps["first_token"]
        metrics: dict[str, Any] = {
            "durations_ns": durations,
            "finish_reason_detail": reason,
            "num_chunks": self.num_chunks,
            "token_count_mismatches": self.mismatches,
        }
        # speculative decoding on: SGLang's own per-request counts as it names them (spec_verify_ct: verify steps;
        # spec_accept_length, spec_accept_rate, spec_num_correct_drafts, spec_accept_histogram where its version has
        # them), kept raw: it gives no ordered per-step counts to check the stream against
        metrics.update({key: value for key, value in meta.items() if key.startswith("spec_") and value is not None})
        if stamps:
            metrics["clock"] = "perf_counter"
            metrics["clock_note"] = (
                "SGLang wall-clock stamps aligned with the harness's time.time()-perf_counter() offset at send"
            )
            metrics["timestamps_ns"] = dict(stamps)
        return metrics
