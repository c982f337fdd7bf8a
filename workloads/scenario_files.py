"""Scenarios from JSON: built-in (`workloads/scenarios/*.json`, the design doc's defaults) or a user's file with the
same fields, each field typed and checked (a bad one is a UsageError naming it), then `--quick` and the CLI's
overrides applied in that order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from engines.base import UsageError
from workloads.lengths import LengthDist, parse_length
from workloads.lora import validate_lora
from workloads.scenarios import GROUP_ORDERS, PROMPT_MODES, SCENARIO_DIR, TEXTS_DIR, Scenario


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in name, or a path to a JSON scenario file."""
    if name_or_path in builtin_names():
        return _from_file(SCENARIO_DIR / f"{name_or_path}.json")
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise UsageError(f"scenario file {name_or_path!r} does not exist")
        return _from_file(path)
    raise UsageError(f"unknown scenario {name_or_path!r}; valid: {', '.join(builtin_names())}, all, or a .json file")


def _from_file(path: Path) -> Scenario:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"scenario file {path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(raw, dict):
        raise UsageError(f"scenario file {path}: top level must be a JSON object")
    raw = _inline_texts(raw, path.parent)
    return build_scenario(raw, source=str(path))


def _inline_texts(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve `pairs_file` and `corpus` file references relative to the scenario, then texts/."""
    raw = dict(raw)
    if "pairs_file" in raw:
        pairs = json.loads(_find_text(raw.pop("pairs_file"), base).read_text(encoding="utf-8"))
        raw["pairs"] = pairs["pairs"] if isinstance(pairs, dict) else pairs
    corpus = raw.get("corpus") or {}
    if not isinstance(corpus, dict):
        raise UsageError("scenario field 'corpus' must be an object: language -> text or file")
    resolved = {}
    for lang, value in corpus.items():
        if isinstance(value, dict) and "file" in value:
            value = _find_text(value["file"], base).read_text(encoding="utf-8")
        resolved[lang] = value
    raw["corpus"] = resolved
    return raw


def _find_text(name: str, base: Path) -> Path:
    for folder in (base, TEXTS_DIR):
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"text file {name!r} not found next to the scenario or in {TEXTS_DIR}")


_TUPLE_FIELDS = {"concurrency": int, "languages": str, "reasoning_delimiters": str, "structured": str}


def _rates(value: Any, source: str) -> tuple[float, ...]:
    """request_rate as data: numbers, or "inf" (JSON has no infinity)."""
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) or v == "inf" for v in value
    ):
        raise UsageError(f"{source}: field 'request_rate' must be a list of req/s numbers or \"inf\"")
    return tuple(float(v) for v in value)


def _length(value: Any, field: str) -> int | LengthDist:
    """A fixed length stays an int (as before); a distribution becomes a LengthDist."""
    length = parse_length(value, field)
    return length.mean if length.is_fixed else length


def build_scenario(raw: dict[str, Any], source: str = "scenario") -> Scenario:
    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(f"{source}: unknown field {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    for required in ("name", "concurrency", "output_tokens"):
        if required not in raw:
            raise UsageError(f"{source}: missing field {required!r}")
    data = dict(raw)
    data.setdefault("description", "")
    for name, kind in _TUPLE_FIELDS.items():
        if name in data:
            value = data[name]
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise UsageError(f"{source}: field {name!r} must be a list of {kind.__name__}")
            data[name] = tuple(value)
    data["pairs"] = tuple(data.get("pairs") or ())
    try:
        if "input_tokens" in data:
            if not isinstance(data["input_tokens"], list):
                raise UsageError("'input_tokens' must be a list of lengths (ints or distributions)")
            data["input_tokens"] = tuple(_length(v, "input_tokens") for v in data["input_tokens"])
        for name in ("output_tokens", "think_time_ms"):
            if name in data and not (name == "think_time_ms" and data[name] == 0):
                data[name] = _length(data[name], name)
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    if "request_rate" in data:
        data["request_rate"] = _rates(data["request_rate"], source)
    if isinstance(data.get("lora_adapters"), list):
        data["lora_adapters"] = tuple(data["lora_adapters"])
    try:
        scenario = Scenario(**data)
    except TypeError as exc:
        raise UsageError(f"{source}: {exc}") from None
    validate(scenario, source)
    return scenario


def validate(scenario: Scenario, source: str = "scenario") -> None:
    def fail(message: str):
        raise UsageError(f"{source}: {message}")

    if not scenario.concurrency or min(scenario.concurrency) < 1:
        fail("'concurrency' needs at least one level, each >= 1")
    try:
        scenario.output_lengths, scenario.input_lengths, scenario.think_times_ms  # noqa: B018 (parsing validates)
    except UsageError as exc:
        fail(str(exc))
    if scenario.prompt_mode not in PROMPT_MODES:
        fail(f"'prompt_mode' must be one of {', '.join(PROMPT_MODES)}")
    if scenario.reasoning_delimiters and len(scenario.reasoning_delimiters) != 2:
        fail('\'reasoning_delimiters\' is [START, END], e.g. ["<think>", "</think>"] (or their token ids)')
    if scenario.prompt_mode == "language-pairs":
        if not scenario.pairs:
            fail("prompt_mode 'language-pairs' needs 'pairs' or 'pairs_file'")
        for pair in scenario.pairs:
            missing = [lang for lang in ("kind", *scenario.languages) if not isinstance(pair.get(lang), str)]
            if missing:
                fail(f"every pair needs text for {missing[0]!r}")
    elif scenario.prompt_mode != "trace" and not scenario.input_tokens:
        fail("'input_tokens' needs at least one length")
    if scenario.num_requests is not None and scenario.num_requests != "concurrency":
        if not isinstance(scenario.num_requests, int) or scenario.num_requests < 1:
            fail("'num_requests' must be an int >= 1 or \"concurrency\"")
    if scenario.repetitions is not None and (not isinstance(scenario.repetitions, int) or scenario.repetitions < 1):
        fail("'repetitions' must be an int >= 1")
    if scenario.warmup_requests < 0 or scenario.shared_prefix_tokens < 0:
        fail("'warmup_requests' and 'shared_prefix_tokens' must be >= 0")
    if scenario.timeout_s <= 0:
        fail("'timeout_s' must be > 0")
    if scenario.request_rate:
        if min(scenario.request_rate) <= 0:
            fail("'request_rate' needs rates > 0 (req/s) or inf")
        grouped = scenario.prompt_mode == "shared-prefix" and scenario.prompts_per_group
        if scenario.prompt_mode in ("language-pairs", "multi-turn", "trace") or (
            scenario.prompt_mode == "shared-prefix" and not grouped
        ):
            fail(
                f"'request_rate' (open loop) works with prompt_mode same, distinct or shared-prefix groups, not "
                f"{scenario.prompt_mode}"
            )
    _validate_traffic(scenario, fail)
    _validate_early_stop(scenario, fail)
    _validate_structured(scenario, fail)
    validate_lora(scenario, fail)
    if scenario.burstiness <= 0 or scenario.max_concurrency < 0:
        fail("'burstiness' must be > 0 (1 = Poisson) and 'max_concurrency' >= 0 (0 = no cap)")


def _validate_traffic(scenario: Scenario, fail) -> None:
    if scenario.num_groups < 1 or scenario.prompts_per_group < 0 or scenario.kv_pressure < 0:
        fail("'num_groups' must be >= 1, 'prompts_per_group' >= 0 and 'kv_pressure' >= 0")
    if scenario.group_order not in GROUP_ORDERS:
        fail(f"'group_order' must be one of {', '.join(GROUP_ORDERS)}")
    if (scenario.num_groups > 1 or scenario.kv_pressure) and not (
        scenario.prompt_mode == "shared-prefix" and scenario.prompts_per_group
    ):
        fail("'num_groups' and 'kv_pressure' need prompt_mode shared-prefix with 'prompts_per_group' >= 1")
    if scenario.step_shapes and (scenario.num_requests != "concurrency" or scenario.request_rate):
        fail("'step_shapes' needs num_requests \"concurrency\" (B requests admitted together) and no request_rate")
    if scenario.kv_pressure and not scenario.shared_prefix_tokens:
        fail("'kv_pressure' needs 'shared_prefix_tokens' >= 1 (groups x prefix is sized against the KV cache)")
    if scenario.prompt_mode == "multi-turn" and (scenario.num_conversations < 1 or scenario.num_turns < 1):
        fail("prompt_mode multi-turn needs 'num_conversations' >= 1 and 'num_turns' >= 1")
    if scenario.prompt_mode == "trace" and not scenario.trace:
        fail("prompt_mode trace needs 'trace' (a Mooncake JSONL file; or --trace FILE)")
    if scenario.trace_speedup <= 0:
        fail("'trace_speedup' must be > 0")


def _validate_early_stop(scenario: Scenario, fail) -> None:
    """The rule's own syntax is checked where the harness reads it (compare/analysis/precision.py)."""
    if scenario.until_ci and (scenario.prompt_mode not in ("same", "distinct") or scenario.step_shapes):
        fail(f"'until_ci' (--until-ci) works with prompt_mode same or distinct, not {scenario.prompt_mode}")
    if scenario.until_ci_max_requests < 1 or scenario.until_ci_max_s < 0:
        fail("'until_ci_max_requests' must be >= 1 and 'until_ci_max_s' >= 0 (0: no limit)")
    if scenario.end_saturated and not scenario.request_rate:
        fail("'end_saturated' (--end-saturated) watches open-loop cells: give 'request_rate' (--request-rate)")


def _validate_structured(scenario: Scenario, fail) -> None:
    from engines.constraints import KINDS
    from workloads.structured import MODES

    unknown = [mode for mode in scenario.structured if mode not in MODES]
    if unknown or len(set(scenario.structured)) != len(scenario.structured):
        fail(f"'structured' lists modes, each once, of {', '.join(MODES)}; got {list(scenario.structured)}")
    if scenario.structured_kind not in KINDS:
        fail(f"'structured_kind' must be one of {', '.join(KINDS)}")
    if scenario.chat not in (None, True, False, "auto"):
        fail(
            "'chat' is true (every prompt through the model's chat template), false, \"auto\" (where the model has "
            "one), or null (where structured or multi-turn)"
        )
    if scenario.structured and scenario.prompt_mode in ("language-pairs", "multi-turn", "trace"):
        fail(f"'structured' works with prompt_mode same, distinct or shared-prefix, not {scenario.prompt_mode}")
    if any(mode != "none" for mode in scenario.structured) and scenario.ignore_eos:
        fail("constrained output ends at EOS: a 'structured' scenario needs \"ignore_eos\": false")


def apply_overrides(scenario: Scenario, quick: bool, overrides: dict[str, Any]) -> Scenario:
    """`--quick` first (the scenario's own `quick` block), then CLI flags, which always win."""
    changes: dict[str, Any] = {}
    for layer in (scenario.quick if quick else {}, {k: v for k, v in overrides.items() if v is not None}):
        changes.update(layer)
        # num_requests and repetitions are two ways to size a cell: the later layer's choice wins
        if "num_requests" in layer and "repetitions" not in layer:
            changes["repetitions"] = None
        if "repetitions" in layer and "num_requests" not in layer:
            changes["num_requests"] = None
    updated = dataclasses.replace(scenario, **changes)
    validate(updated, f"scenario {scenario.name!r} after overrides")
    return updated


def with_min_requests(scenario: Scenario, minimum: int) -> Scenario:
    """Cells of at least `minimum` measured requests (an interval over requests needs them); the same scenario
    where every cell already has them. Prefix-cache style cells (one request per worker) are left alone."""
    if scenario.num_requests == "concurrency":
        return scenario
    smallest = min(scenario.requests_for(c) for c in scenario.concurrency)
    if smallest >= minimum:
        return scenario
    if scenario.num_requests is not None:
        return dataclasses.replace(scenario, num_requests=minimum)
    reps = -(-minimum // min(scenario.concurrency))
    return dataclasses.replace(scenario, repetitions=reps)
