"""Reasoning models: where a reasoning block ends, so the first answer token can be told from the first token.

TTFT is the first token, which for a reasoning model is the first reasoning token. Time to first answer
(`ttfa_ms`) is the first token after the end delimiter (`</think>`), and `reasoning_tokens` counts the tokens
up to and including it. The end is found by its token id in the engine's output ids, so each delimiter must be
one token of the model's tokenizer (or be given as its id). Engines that stream text only (Ollama, llama.cpp's
server) give no ids: their records have no reasoning figures.
"""

from __future__ import annotations

import dataclasses

from engines.base import UsageError
from workloads.cellplan import CellPlan

AUTO_END = "</think>"  # Qwen3, DeepSeek-R1 and their kin; taken only where the tokenizer has it as one token


def reasoning_end_id(delimiters: tuple[str, ...], tokenizer) -> int | None:
    """The end delimiter's token id: the one named (a token or an id), else </think> where it is one token."""
    if not delimiters:
        return _single_token(AUTO_END, tokenizer)
    if len(delimiters) != 2:
        raise UsageError(f"--reasoning-delimiters {','.join(delimiters)!r}: give START,END (e.g. '<think>,</think>')")
    end = delimiters[1].strip()
    if end.isdigit():
        return int(end)
    found = _single_token(end, tokenizer)
    if found is None:
        count = len(_ids(end, tokenizer))
        raise UsageError(
            f"--reasoning-delimiters: {end!r} is {count} tokens of this model's tokenizer, not one; "
            "give delimiters that are single tokens, or their ids"
        )
    return found


def _ids(text: str, tokenizer) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def _single_token(text: str, tokenizer) -> int | None:
    ids = _ids(text, tokenizer)
    return ids[0] if len(ids) == 1 else None


def with_reasoning_end(plan: CellPlan, end_id: int) -> CellPlan:
    """Every request of the plan (warmups, measured, a conversation's template) told where reasoning ends."""

    def tagged(requests):
        return tuple(dataclasses.replace(r, reasoning_end_token_id=end_id) for r in requests)

    return dataclasses.replace(plan, warmups=tagged(plan.warmups), requests=tagged(plan.requests))
