"""Turn a scenario into the exact request lists of each cell, before any engine starts.

Everything is seeded and built up front, so a bad cell (a prompt longer than the model's context)
is reported before anything is measured, and every engine sees byte-identical prompts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engines.base import Request, UsageError
from workloads.arrivals import arrival_offsets_ns
from workloads.prompts import Prompt, PromptBuilder, load_corpus
from workloads.scenarios import CellSpec, Scenario


@dataclass(frozen=True)
class CellPlan:
    spec: CellSpec
    warmups: tuple[Request, ...]
    requests: tuple[Request, ...]
    target_prompt_tokens: int | None  # None for natural-length prompts
    num_inexact_text_prompts: int  # prompts whose text does not re-encode to the exact ids
    arrivals_ns: tuple[int, ...] | None = None  # open loop: each request's due time after the cell's start


def plan_scenario(scenario: Scenario, tokenizer, max_context_tokens: int | None) -> list[CellPlan]:
    builders: dict[str, PromptBuilder] = {}

    def builder_for(language: str) -> PromptBuilder:
        if language not in builders:
            text = scenario.corpus.get(language) or load_corpus(language)
            builders[language] = PromptBuilder(tokenizer, text)
        return builders[language]

    plans = []
    for index, cell in enumerate(scenario.cells()):
        plan = _plan_cell(scenario, cell, builder_for(cell.language))
        if cell.request_rate is not None:
            arrivals = arrival_offsets_ns(len(plan.requests), cell.request_rate, scenario.burstiness, scenario.seed + index)
            plan = dataclasses.replace(plan, arrivals_ns=tuple(arrivals))
        plans.append(plan)
    fix = "lower --input-tokens/--output-tokens or use a longer-context model"
    check_fits(scenario, plans, max_context_tokens, "the model's context", fix)
    return plans


def check_fits(scenario: Scenario, plans: list[CellPlan], limit: int | None, owner: str, fix: str) -> None:
    """Every prompt plus its output must fit `limit`; checked before anything is measured."""
    if not limit:
        return
    for plan in plans:
        longest = max(len(r.prompt_token_ids) for r in plan.requests + plan.warmups)
        if longest + scenario.output_tokens > limit:
            raise UsageError(
                f"cell {plan.spec.cell_id}: prompt {longest} + output {scenario.output_tokens} tokens exceed "
                f"{owner} ({limit} tokens); {fix}"
            )


def _plan_cell(scenario: Scenario, cell: CellSpec, builder: PromptBuilder) -> CellPlan:
    count, warmups = cell.num_requests, scenario.warmup_requests
    offsets = builder.offsets(count + warmups + 1, scenario.seed)
    measured_offsets, warmup_offsets = offsets[: count + 1], offsets[count + 1 :]
    mode = scenario.prompt_mode
    if mode == "language-pairs":
        pair = next(p for p in scenario.pairs if p["kind"] == cell.kind)
        prompts = [builder.natural(pair[cell.language])] * count
        target = None
    else:
        target = scenario.prompt_tokens_for(cell)
        if mode == "same":
            prompts = [builder.exact(target, measured_offsets[0])] * count
        elif mode == "distinct":
            prompts = [builder.exact(target, offset) for offset in measured_offsets[:count]]
        else:  # shared-prefix: one system prompt, then a distinct question per request
            system = builder.exact(scenario.shared_prefix_tokens, measured_offsets[0])
            prompts = [builder.exact(target, offset, prefix=system) for offset in measured_offsets[1:]]
    warmup_length = target if target is not None else prompts[0].num_tokens
    warmup_prompts = [builder.exact(warmup_length, offset) for offset in warmup_offsets]
    return CellPlan(
        spec=cell,
        warmups=tuple(_request(scenario, f"{cell.cell_id}-warmup{i}", p) for i, p in enumerate(warmup_prompts)),
        requests=tuple(_request(scenario, f"{cell.cell_id}-{i}", p) for i, p in enumerate(prompts)),
        target_prompt_tokens=target,
        num_inexact_text_prompts=sum(not p.text_roundtrip_exact for p in prompts),
    )


def _request(scenario: Scenario, request_id: str, prompt: Prompt) -> Request:
    return Request(
        request_id=request_id,
        prompt_token_ids=prompt.token_ids,
        max_output_tokens=scenario.output_tokens,
        min_output_tokens=scenario.output_tokens if scenario.ignore_eos else 0,
        prompt_text=prompt.text,
        ignore_eos=scenario.ignore_eos,
        temperature=scenario.temperature,
        reuse_prefix=scenario.prompt_mode == "shared-prefix",
    )
