"""Turn a scenario into the exact request lists of each cell, before any engine starts.

Everything is seeded and built up front, so a bad cell (a prompt longer than the model's context)
is reported before anything is measured, and every engine sees byte-identical prompts.
"""

from __future__ import annotations

import dataclasses

from engines.base import UsageError
from workloads.arrivals import arrival_offsets_ns
from workloads.cellplan import CellPlan, draw_lengths, make_request
from workloads.chat import wants_chat
from workloads.lora import Adapter, with_adapters
from workloads.reasoning import reasoning_end_id, with_reasoning_end
from workloads.prompts import PromptBuilder, load_corpus
from workloads.scenarios import CellSpec, Scenario
from workloads.structured import with_constraints
from workloads.traffic import groups_for_pressure, plan_conversations, plan_groups, plan_trace

__all__ = ["CellPlan", "check_fits", "plan_scenario"]


MODEL_CONTEXT_FIX = "lower --input-tokens/--output-tokens or use a longer-context model"


def plan_scenario(
    scenario: Scenario,
    tokenizer,
    max_context_tokens: int | None,
    kv_capacity_tokens: int | None = None,
    adapters: tuple[Adapter, ...] = (),
) -> list[CellPlan]:
    """`kv_capacity_tokens`: the engine's KV cache size, which a `kv_pressure` scenario sizes its groups by;
    `adapters`: the scenario's LoRA adapters (workloads/lora.py resolve_adapters), drawn per request."""
    builders: dict[str, PromptBuilder] = {}
    chat = wants_chat(scenario.chat, scenario.prompt_mode, scenario.structured, tokenizer)

    def builder_for(language: str) -> PromptBuilder:
        if language not in builders:
            text = scenario.corpus.get(language) or load_corpus(language)
            builders[language] = PromptBuilder(tokenizer, text, chat)
        return builders[language]

    if scenario.kv_pressure and kv_capacity_tokens:
        scenario = dataclasses.replace(scenario, num_groups=groups_for_pressure(scenario, kv_capacity_tokens))
    if scenario.prompt_mode == "trace":
        plans = [plan_trace(scenario, builder_for(scenario.languages[0]))]
    else:
        plans = []
        for index, cell in enumerate(scenario.cells()):
            plan = _plan_cell(scenario, cell, builder_for(cell.language))
            if cell.request_rate is not None:
                arrivals = arrival_offsets_ns(
                    len(plan.requests), cell.request_rate, scenario.burstiness, scenario.seed + index
                )
                plan = dataclasses.replace(plan, arrivals_ns=tuple(arrivals))
            plans.append(dataclasses.replace(plan, chat=chat.to_json()) if chat is not None else plan)
    check_fits(scenario, plans, max_context_tokens, "the model's context", MODEL_CONTEXT_FIX)
    plans = [with_adapters(with_constraints(plan, scenario.structured_kind), scenario, adapters) for plan in plans]
    end_id = reasoning_end_id(scenario.reasoning_delimiters, tokenizer)
    return [with_reasoning_end(plan, end_id) for plan in plans] if end_id is not None else plans


def check_declared_fit(scenario: Scenario, limit: int | None, owner: str, fix: str) -> None:
    """Before any model is built or prompt planned: each cell's shortest prompt (its input length as declared, plus
    the shared prefix) and longest output must fit `limit`. check_fits checks the planned prompts exactly later."""
    if not limit or scenario.prompt_mode == "trace":
        return
    output = scenario.output_lengths.upper_bound
    for cell in scenario.cells():
        if cell.input_tokens is None:  # language pairs: the prompt is a text, its length known once tokenized
            continue
        shortest = cell.input_dist.min if cell.input_dist is not None else cell.input_tokens
        prompt = shortest + scenario.shared_prefix_tokens
        if prompt + output > limit:
            raise UsageError(
                f"cell {cell.cell_id}: prompt {prompt} + output {output} tokens exceed {owner} ({limit} tokens); {fix}"
            )


def check_fits(scenario: Scenario, plans: list[CellPlan], limit: int | None, owner: str, fix: str) -> None:
    """Every prompt plus its output must fit `limit`; checked before anything is measured."""
    if not limit:
        return
    for plan in plans:
        prompt, output = plan.longest_sequence
        if prompt + output > limit:
            raise UsageError(
                f"cell {plan.spec.cell_id}: prompt {prompt} + output {output} tokens exceed {owner} "
                f"({limit} tokens); {fix}"
            )


def _plan_cell(scenario: Scenario, cell: CellSpec, builder: PromptBuilder) -> CellPlan:
    if scenario.prompt_mode == "multi-turn":
        return plan_conversations(scenario, cell, builder)
    if scenario.prompt_mode == "shared-prefix" and scenario.prompts_per_group:
        return plan_groups(scenario, cell, builder)
    count, warmups = cell.num_requests, scenario.warmup_requests
    offsets = builder.offsets(count + warmups + 1, scenario.seed)
    measured_offsets, warmup_offsets = offsets[: count + 1], offsets[count + 1 :]
    mode = scenario.prompt_mode
    lengths = draw_lengths(scenario, cell, count)
    if mode == "language-pairs":
        pair = next(p for p in scenario.pairs if p["kind"] == cell.kind)
        prompts = [builder.natural(pair[cell.language])] * count
        target = None
    else:
        target = scenario.prompt_tokens_for(cell) if cell.input_dist is None else None
        inputs = [n + scenario.shared_prefix_tokens for n in lengths.inputs]
        if mode == "same":
            prompts = [builder.exact(inputs[0], measured_offsets[0])] * count
        elif mode == "distinct":
            prompts = [builder.exact(n, offset) for n, offset in zip(inputs, measured_offsets[:count])]
        else:  # shared-prefix: one system prompt, then a distinct question per request
            system = builder.exact(scenario.shared_prefix_tokens, measured_offsets[0])
            prompts = [builder.exact(n, offset, prefix=system) for n, offset in zip(inputs, measured_offsets[1:])]
    warmup_length = target if target is not None else prompts[0].num_tokens
    warmup_prompts = [builder.exact(warmup_length, offset) for offset in warmup_offsets]
    out = scenario.output_lengths.mean
    return CellPlan(
        spec=cell,
        warmups=tuple(
            make_request(scenario, f"{cell.cell_id}-warmup{i}", p.token_ids, out, p.text)
            for i, p in enumerate(warmup_prompts)
        ),
        requests=tuple(
            make_request(scenario, f"{cell.cell_id}-{i}", p.token_ids, n, p.text)
            for i, (p, n) in enumerate(zip(prompts, lengths.outputs))
        ),
        target_prompt_tokens=target,
        num_inexact_text_prompts=sum(not p.text_roundtrip_exact for p in prompts),
        traffic=lengths.describe(),
    )
