"""The traffic schedulers meet, planned up front and seeded: shared-prefix groups, multi-turn conversations
and trace replay (the fixed and drawn single-turn cells are in workloads/plan.py).

- Groups: G groups x P prompts; each group has its own system prompt of S tokens, then a distinct question of
  Q tokens per prompt. The shared ids are checked to be identical within a group and different between
  groups, and the check is recorded. Order grouped (a group's prompts in a row) or shuffled (seeded).
  `kv_pressure` sizes G so that G x S is that multiple of the engine's KV capacity.
- Conversations: C conversations x T turns. The user turns are planned here (the first starts with BOS, or under
  a chat template with its head; a later one with the template's end of the assistant's turn);
  each turn's prompt is built as the cell runs: the whole history, the engine's own earlier output ids
  included, plus the new user turn (compare/run/runner.py: conversation_loop).
- Trace: a Mooncake JSONL file (workloads/trace.py): prompts share exact 512-token blocks where the hash
  ids match, and requests are due at the trace's times, compressed by `trace_speedup`.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from engines.base import UsageError
from workloads.cellplan import CellPlan, Conversation, draw_lengths, make_request
from workloads.prompts import PromptBuilder
from workloads.scenarios import CellSpec, Scenario


def groups_for_pressure(scenario: Scenario, kv_capacity_tokens: int) -> int:
    return max(1, math.ceil(scenario.kv_pressure * kv_capacity_tokens / scenario.shared_prefix_tokens))


def plan_groups(scenario: Scenario, cell: CellSpec, builder: PromptBuilder) -> CellPlan:
    num_groups, per_group, warmups = scenario.num_groups, scenario.prompts_per_group, scenario.warmup_requests
    # every question its own seeded start in the corpus, in every group (SGLang's generated-shared-prefix draws each
    # question on its own too): question j of two groups must not be the same ids
    offsets = builder.offsets(num_groups + num_groups * per_group + warmups, scenario.seed)
    systems = [builder.exact(scenario.shared_prefix_tokens, offset) for offset in offsets[:num_groups]]
    question_offsets = random.Random(scenario.seed + 1).sample(
        offsets[num_groups : num_groups * (per_group + 1)], num_groups * per_group
    )
    lengths = draw_lengths(scenario, cell, num_groups * per_group)
    order = [(g, j) for g in range(num_groups) for j in range(per_group)]
    if scenario.group_order == "shuffled":
        random.Random(scenario.seed).shuffle(order)
    requests, inexact = [], 0
    for index, (g, j) in enumerate(order):
        prompt = builder.exact(
            scenario.shared_prefix_tokens + lengths.inputs[index],
            question_offsets[g * per_group + j],
            prefix=systems[g],
        )
        inexact += not prompt.text_roundtrip_exact
        requests.append(
            make_request(
                scenario,
                f"{cell.cell_id}-g{g}-{j}",
                prompt.token_ids,
                lengths.outputs[index],
                prompt.text,
                (("group", g), ("member", j)),
            )
        )
    warmup_prompts = (
        [builder.exact(scenario.shared_prefix_tokens + (cell.input_tokens or 1), o) for o in offsets[-warmups:]]
        if warmups
        else []
    )
    return CellPlan(
        spec=cell,
        warmups=tuple(
            make_request(scenario, f"{cell.cell_id}-warmup{i}", p.token_ids, scenario.output_lengths.mean, p.text)
            for i, p in enumerate(warmup_prompts)
        ),
        requests=tuple(requests),
        target_prompt_tokens=scenario.prompt_tokens_for(cell) if cell.input_dist is None else None,
        num_inexact_text_prompts=inexact,
        traffic={
            "kind": "shared-prefix groups",
            "num_groups": num_groups,
            "prompts_per_group": per_group,
            "shared_prefix_tokens": scenario.shared_prefix_tokens,
            "order": scenario.group_order,
            "kv_pressure": scenario.kv_pressure or None,
            **lengths_of(lengths),
            "shared_ids": verify_groups(requests, scenario.shared_prefix_tokens),
        },
    )


def verify_groups(requests, shared_tokens: int) -> dict:
    """Every prompt of a group starts with the same `shared_tokens` ids; no two groups share them."""
    prefixes: dict[int, set[tuple[int, ...]]] = {}
    for request in requests:
        prefixes.setdefault(dict(request.tags)["group"], set()).add(request.prompt_token_ids[:shared_tokens])
    identical = all(len(found) == 1 for found in prefixes.values())
    distinct = sorted(next(iter(found)) for found in prefixes.values())
    overlap = max((_common(a, b) for a, b in zip(distinct, distinct[1:])), default=0)  # sorted: neighbours share most
    if not identical or len(set(distinct)) != len(distinct):
        raise UsageError(
            f"shared-prefix groups: the corpus gave "
            f"{'unequal prefixes within a group' if not identical else 'equal prefixes in two groups'}; "
            "use a longer corpus or fewer groups"
        )
    questions = {request.prompt_token_ids[shared_tokens:] for request in requests}
    return {
        "identical_within_groups": identical,
        "distinct_between_groups": True,
        "max_tokens_shared_between_groups": overlap,
        "distinct_questions": len(questions),
        "questions": len(requests),
    }


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def plan_conversations(scenario: Scenario, cell: CellSpec, builder: PromptBuilder) -> CellPlan:
    num_conv, num_turns = scenario.num_conversations, scenario.num_turns
    offsets = builder.offsets(num_conv * num_turns + scenario.warmup_requests, scenario.seed)
    lengths = draw_lengths(scenario, cell, num_conv * num_turns)
    think_ms = (
        scenario.think_times_ms.draw(num_conv * num_turns, scenario.seed + 7)
        if scenario.think_time_ms
        else [0] * (num_conv * num_turns)
    )
    bos = builder.bos_ids
    closing_id = builder.chat.turn_head_ids[0] if builder.chat is not None else None  # e.g. <|im_end|>
    conversations, inexact = [], 0
    for c in range(num_conv):
        turns = []
        for t in range(num_turns):
            k = c * num_turns + t
            prompt = builder.exact(lengths.inputs[k] + len(bos), offsets[k], later_turn=t > 0)
            inexact += not prompt.text_roundtrip_exact
            turns.append(prompt.token_ids if t == 0 else prompt.token_ids[len(bos) :])
        span = slice(c * num_turns, (c + 1) * num_turns)
        conversations.append(
            Conversation(
                c, tuple(turns), tuple(lengths.outputs[span]), tuple(int(ms * 1e6) for ms in think_ms[span]), closing_id
            )
        )
    first_turns = [
        make_request(
            scenario,
            f"{cell.cell_id}-c{c.index}-t0",
            c.user_turns[0],
            c.output_tokens[0],
            None,
            (("conversation", c.index), ("turn", 0)),
        )
        for c in conversations
    ]
    warmups = [builder.exact(lengths.inputs[0] + len(bos), o) for o in offsets[num_conv * num_turns :]]
    return CellPlan(
        spec=cell,
        warmups=tuple(
            make_request(scenario, f"{cell.cell_id}-warmup{i}", p.token_ids, scenario.output_lengths.mean, p.text)
            for i, p in enumerate(warmups)
        ),
        requests=tuple(first_turns),
        target_prompt_tokens=None,
        num_inexact_text_prompts=inexact,
        conversations=tuple(conversations),
        traffic={
            "kind": "multi-turn",
            "num_conversations": num_conv,
            "num_turns": num_turns,
            "max_active_conversations": cell.concurrency,
            "think_time_ms": scenario.think_times_ms.to_json(),
            **lengths_of(lengths),
        },
    )


def plan_trace(scenario: Scenario, builder: PromptBuilder) -> CellPlan:
    from workloads.trace import TRACES_DIR, BlockPrompts, arrival_offsets_ns, load_trace

    limit = scenario.num_requests if isinstance(scenario.num_requests, int) else None
    path = Path(scenario.trace)
    entries = load_trace(path if path.exists() or path.is_absolute() else TRACES_DIR / path, limit)
    blocks = BlockPrompts(builder.corpus_ids(), builder.bos_ids, scenario.seed)
    requests = [
        make_request(scenario, f"trace-{i}", blocks.prompt(e), e.output_length, None, (("trace_index", i),))
        for i, e in enumerate(entries)
    ]
    arrivals = arrival_offsets_ns(entries, scenario.trace_speedup)
    hash_ids = [h for e in entries for h in e.hash_ids]
    spec = CellSpec("trace", scenario.max_concurrency, None, scenario.languages[0], None, len(requests))
    warmups = (
        [
            builder.exact(min(512, len(requests[0].prompt_token_ids)), o)
            for o in builder.offsets(scenario.warmup_requests, scenario.seed)
        ]
        if scenario.warmup_requests
        else []
    )
    return CellPlan(
        spec=spec,
        warmups=tuple(
            make_request(scenario, f"trace-warmup{i}", p.token_ids, 16, p.text) for i, p in enumerate(warmups)
        ),
        requests=tuple(requests),
        target_prompt_tokens=None,
        num_inexact_text_prompts=0,
        arrivals_ns=tuple(arrivals),
        traffic={
            "kind": "trace",
            "file": scenario.trace,
            "speedup": scenario.trace_speedup,
            "num_requests": len(requests),
            "duration_s": arrivals[-1] / 1e9 if arrivals else 0.0,
            "blocks": len(hash_ids),
            "unique_blocks": len(set(hash_ids)),
            "prompts_by_token_ids": True,
        },
    )


def lengths_of(lengths) -> dict:
    described = lengths.describe()
    return {k: v for k, v in (described or {}).items() if k != "kind"}
