"""A cell's plan: the exact requests it sends, built before any engine starts, and how one request is made.

Lengths are drawn here (seeded per cell) when the scenario gives a distribution: every prompt still hits its
own drawn target exactly, and each record keeps its own prompt and output targets.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from engines.base import Request
from workloads.scenarios import CellSpec, Scenario


@dataclass(frozen=True)
class Conversation:
    """One multi-turn conversation: its user turns (ids; the first starts with BOS), each turn's output length,
    and the think time before each next turn."""

    index: int
    user_turns: tuple[tuple[int, ...], ...]
    output_tokens: tuple[int, ...]
    think_ns: tuple[int, ...]  # after turn t's answer, before turn t + 1
    closing_id: int | None = None  # chat: the id that ends an assistant's message, which a later user turn starts with

    @property
    def longest_sequence(self) -> tuple[int, int]:
        """(prompt, output) tokens of the last turn, the longest this conversation sends."""
        return sum(len(turn) for turn in self.user_turns) + sum(self.output_tokens[:-1]), self.output_tokens[-1]


@dataclass(frozen=True)
class CellPlan:
    spec: CellSpec
    warmups: tuple[Request, ...]
    requests: tuple[Request, ...]  # multi-turn: each conversation's first turn (later turns are built as it runs)
    target_prompt_tokens: int | None  # None for natural or drawn lengths (each request records its own)
    num_inexact_text_prompts: int  # prompts whose text does not re-encode to the exact ids
    arrivals_ns: tuple[int, ...] | None = None  # open loop: each request's due time after the cell's start
    conversations: tuple[Conversation, ...] = ()  # multi-turn
    traffic: dict[str, Any] | None = None  # what the workload is, with its checks (groups, conversations, trace)
    chat: dict[str, Any] | None = None  # the chat template around every prompt (workloads/chat.py), where applied

    @property
    def num_measured(self) -> int:
        return sum(len(c.user_turns) for c in self.conversations) if self.conversations else len(self.requests)

    @property
    def longest_sequence(self) -> tuple[int, int]:
        """(prompt, output) tokens of the longest request the cell can send (multi-turn: a last turn)."""
        if self.conversations:
            return max((c.longest_sequence for c in self.conversations), key=sum)
        return max(((len(r.prompt_token_ids), r.max_output_tokens) for r in self.requests + self.warmups), key=sum)


@dataclass(frozen=True)
class Lengths:
    """The drawn per-request lengths of one cell (input: tokens after any shared prefix)."""

    inputs: list[int]
    outputs: list[int]
    input_dist: Any = None
    output_dist: Any = None

    def describe(self) -> dict[str, Any] | None:
        if self.input_dist is None and self.output_dist is None:
            return None
        return {
            "kind": "length distributions",
            "input_tokens": self.input_dist.to_json() if self.input_dist else None,
            "output_tokens": self.output_dist.to_json() if self.output_dist else None,
        }


def draw_lengths(scenario: Scenario, cell: CellSpec, count: int, salt: int = 0) -> Lengths:
    """Seeded per cell: the same scenario and seed give every engine the same lengths."""
    outputs = scenario.output_lengths
    seed = zlib.crc32(f"{scenario.seed}/{salt}/{cell.cell_id}".encode())
    inputs = cell.input_dist.draw(count, seed) if cell.input_dist else [cell.input_tokens or 0] * count
    drawn_outputs = outputs.draw(count, seed + 1)
    return Lengths(inputs, drawn_outputs, cell.input_dist, None if outputs.is_fixed else outputs)


def make_request(
    scenario: Scenario,
    request_id: str,
    prompt_ids: tuple[int, ...],
    output_tokens: int,
    prompt_text: str | None,
    tags: tuple[tuple[str, int], ...] = (),
) -> Request:
    return Request(
        request_id=request_id,
        prompt_token_ids=prompt_ids,
        max_output_tokens=output_tokens,
        min_output_tokens=output_tokens if scenario.ignore_eos else 0,
        prompt_text=prompt_text,
        ignore_eos=scenario.ignore_eos,
        temperature=scenario.temperature,
        reuse_prefix=scenario.prompt_mode in ("shared-prefix", "multi-turn", "trace"),
        tags=tags,
    )
