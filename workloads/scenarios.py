"""Scenarios are data: a frozen dataclass of fields, expanded into cells. Loading them from JSON, checking
every field, `--quick` and the CLI's overrides: workloads/scenario_files.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.arrivals import rate_label
from workloads.lengths import LengthDist, parse_length

SCENARIO_DIR = Path(__file__).parent / "scenarios"
TEXTS_DIR = Path(__file__).parent / "texts"
PROMPT_MODES = ("same", "distinct", "shared-prefix", "language-pairs", "multi-turn", "trace")
GROUP_ORDERS = ("grouped", "shuffled")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    concurrency: tuple[int, ...]  # closed-loop workers; multi-turn: conversations active at once
    output_tokens: int | LengthDist  # a length or a distribution (workloads/lengths.py)
    input_tokens: tuple[int | LengthDist, ...] = ()  # one cell per entry; multi-turn: each new user turn
    num_requests: int | str | None = None  # per cell; "concurrency" = one request per worker
    repetitions: int | None = None  # per worker: a cell has repetitions x concurrency requests
    warmup_requests: int = 3
    prompt_mode: str = "distinct"
    shared_prefix_tokens: int = 0
    languages: tuple[str, ...] = ("en",)
    corpus: dict[str, str] = field(default_factory=dict)  # language -> source text (else built-in)
    pairs: tuple[dict[str, str], ...] = ()  # language-pairs: [{"kind", "<lang>": text, ...}]
    ignore_eos: bool = True
    temperature: float = 0.0
    # reasoning models: the start and end of a reasoning block, as tokens of the model's tokenizer or as ids;
    # () takes </think> where the tokenizer has it as one token (workloads/reasoning.py)
    reasoning_delimiters: tuple[str, ...] = ()
    timeout_s: float = 300.0
    seed: int = 0
    quick: dict[str, Any] = field(default_factory=dict)
    request_rate: tuple[
        float, ...
    ] = ()  # open loop: one cell per rate (req/s; inf: all at once) instead of per concurrency
    burstiness: float = 1.0  # open loop: gamma shape of the gaps (1: Poisson)
    max_concurrency: int = 0  # open loop: requests in flight at most (0: no cap)
    # shared-prefix groups (prompt_mode shared-prefix): G groups x P prompts, each group its own system prompt
    num_groups: int = 1
    prompts_per_group: int = 0  # 0: every measured request in one group (the design's prefix-cache scenario)
    group_order: str = "grouped"  # grouped: a group's prompts one after another; shuffled: seeded order
    kv_pressure: float = 0.0  # > 0: num_groups sized so groups x prefix = this x the engine's KV capacity
    # multi-turn conversations (prompt_mode multi-turn): each turn's prompt is the whole history + a new turn
    num_conversations: int = 0
    num_turns: int = 0
    think_time_ms: int | LengthDist = 0  # between a turn's answer and the next turn
    # trace replay (prompt_mode trace): Mooncake JSONL, open loop at the trace's times
    trace: str = ""
    trace_speedup: float = 1.0
    # structured output (workloads/structured.py): one cell per mode (none, cached, unique) of one kind of constraint
    structured: tuple[str, ...] = ()
    structured_kind: str = "json"
    chat: bool | str | None = (
        None  # the model's chat template around every prompt; None: where structured; "auto": where the model has one
    )
    # multi-LoRA (workloads/lora.py): N synthetic adapters of lora_rank, or PEFT folders; each request draws one
    lora_adapters: int | tuple[str, ...] = 0
    lora_rank: int = 8
    lora_distribution: str = "uniform"  # uniform, zipf, round-robin, distinct, identical
    lora_zipf_alpha: float = 1.0
    # batch shapes (compare/analysis/stepcost.py): each cell is B requests of C tokens admitted together; its steady
    # steps (B running, B tokens scheduled) feed the step-cost model
    step_shapes: bool = False
    # early stops (compare/run/stopping.py): until the 95% interval of a figure is this tight (METRIC=W%), at most
    # until_ci_max_requests requests and until_ci_max_s seconds (0: no limit); open loop: end a saturated cell
    until_ci: str = ""
    until_ci_max_requests: int = 1000
    until_ci_max_s: float = 600.0
    end_saturated: bool = False

    @property
    def early_stop(self) -> EarlyStop | None:
        if not self.until_ci and not self.end_saturated:
            return None
        return EarlyStop(self.until_ci, self.until_ci_max_s if self.until_ci else 0.0, self.end_saturated)

    def cells(self) -> list[CellSpec]:
        if self.request_rate:
            return self._open_loop_cells()
        cells = []
        for concurrency in self.concurrency:
            if self.prompt_mode == "language-pairs":
                for pair in self.pairs:
                    for language in self.languages:
                        cell_id = f"c{concurrency}-{pair['kind']}-{language}"
                        cells.append(
                            CellSpec(cell_id, concurrency, None, language, pair["kind"], self.requests_for(concurrency))
                        )
                continue
            for length in self.input_lengths:
                for language in self.languages:
                    for mode in self.structured or (None,):
                        cell_id = f"c{concurrency}-in{length.label}{self._suffix(language, mode)}"
                        cells.append(
                            CellSpec(
                                cell_id,
                                concurrency,
                                length.mean,
                                language,
                                None,
                                self.requests_for(concurrency),
                                input_dist=None if length.is_fixed else length,
                                structured=mode,
                                admit_together=self.step_shapes,
                                early_stop=self.early_stop,
                            )
                        )
        return cells

    def _suffix(self, language: str, mode: str | None) -> str:
        return (f"-{language}" if len(self.languages) > 1 else "") + (f"-{mode}" if mode else "")

    def _open_loop_cells(self) -> list[CellSpec]:
        """Per rate and prompt length; every cell has as many requests as the busiest closed-loop cell would."""
        count = self.requests_for(max(self.concurrency))
        cells = []
        for rate in self.request_rate:
            for length in self.input_lengths:
                for language in self.languages:
                    for mode in self.structured or (None,):
                        cell_id = f"{rate_label(rate)}-in{length.label}{self._suffix(language, mode)}"
                        cells.append(
                            CellSpec(
                                cell_id,
                                self.max_concurrency,
                                length.mean,
                                language,
                                None,
                                count,
                                rate,
                                None if length.is_fixed else length,
                                mode,
                                early_stop=self.early_stop,
                            )
                        )
        return cells

    @property
    def input_lengths(self) -> tuple[LengthDist, ...]:
        return tuple(parse_length(value, "input_tokens") for value in self.input_tokens)

    @property
    def output_lengths(self) -> LengthDist:
        return parse_length(self.output_tokens, "output_tokens")

    @property
    def think_times_ms(self) -> LengthDist:
        return (
            LengthDist("fixed", 0, min=0)
            if self.think_time_ms == 0
            else parse_length(self.think_time_ms, "think_time_ms")
        )

    def requests_for(self, concurrency: int) -> int:
        if self.prompt_mode == "multi-turn":
            return self.num_conversations * self.num_turns
        if self.prompt_mode == "shared-prefix" and self.prompts_per_group:
            return self.num_groups * self.prompts_per_group
        if self.until_ci:  # the cap: the cell stops sooner once its interval is tight
            return self.until_ci_max_requests
        if self.num_requests == "concurrency":
            return concurrency
        if self.num_requests is not None:
            return int(self.num_requests)
        return int(self.repetitions or 1) * concurrency

    def prompt_tokens_for(self, cell: CellSpec) -> int | None:
        if cell.input_tokens is None:
            return None
        return cell.input_tokens + self.shared_prefix_tokens

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_tokens"] = [length.to_json() for length in self.input_lengths]
        data["output_tokens"] = self.output_lengths.to_json()
        data["think_time_ms"] = self.think_times_ms.to_json() if self.think_time_ms else 0
        data["request_rate"] = ["inf" if math.isinf(r) else r for r in self.request_rate]
        data["corpus"] = {lang: f"<{len(text)} characters>" for lang, text in self.corpus.items()}
        return data


@dataclass(frozen=True)
class EarlyStop:
    """What may end a cell before its planned requests run out (compare/run/stopping.py)."""

    until_ci: str = ""  # METRIC=W% or METRIC:pQ=W% (compare/analysis/precision.py); the plan holds the cap in requests
    max_s: float = 0.0  # measured seconds at most (0: no limit)
    end_saturated: bool = False  # open loop: end the cell once in-flight count and TTFT grow without bound


@dataclass(frozen=True)
class CellSpec:
    cell_id: str
    concurrency: int
    input_tokens: int | None  # per-request tokens (after any shared prefix); None = natural length
    language: str
    kind: str | None  # language-pairs prompt kind
    num_requests: int
    request_rate: float | None = None  # open loop (req/s); None: closed loop at `concurrency`
    input_dist: LengthDist | None = None  # per-request lengths drawn from it (input_tokens is then its mean)
    structured: str | None = (
        None  # structured output: none, cached or unique (workloads/structured.py); None: no such cells
    )
    early_stop: EarlyStop | None = None
    admit_together: bool = False  # batch shapes: the cell's requests start in one engine step (compare/run/runner.py)
