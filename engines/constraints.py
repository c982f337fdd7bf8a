"""Structured output: one request's constraint, and how each engine's own request type carries it.

A constraint is a JSON schema, a regex, or a choice among strings (workloads/structured.py writes them). Engines
name the kinds they take in `constraint_kinds`; a scenario asking for another kind exits 2 before anything
starts. The output is checked after the cell (workloads/structured.py), never by the engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

KINDS = ("json", "regex", "choice")


@dataclass(frozen=True, slots=True)
class Constraint:
    kind: str  # "json" | "regex" | "choice"
    name: str  # which one: "07-nested-object", or "07-nested-object/u3" for a unique variant
    value: str  # the JSON schema as JSON text, the pattern, or the choices as a JSON list

    @property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.value)

    @property
    def choices(self) -> list[str]:
        return json.loads(self.value)

    @property
    def as_regex(self) -> str:
        """A choice as a regex (engines without a choice type); a regex as itself."""
        if self.kind == "choice":
            return "(" + "|".join(re.escape(choice) for choice in self.choices) + ")"
        return self.value


def vllm_structured(constraint: Constraint):
    """vLLM's `SamplingParams(structured_outputs=...)`."""
    from vllm.sampling_params import StructuredOutputsParams

    if constraint.kind == "json":
        return StructuredOutputsParams(json=constraint.schema)
    if constraint.kind == "regex":
        return StructuredOutputsParams(regex=constraint.value)
    return StructuredOutputsParams(choice=constraint.choices)


def sglang_structured(constraint: Constraint) -> dict[str, str]:
    """SGLang's sampling-params keys (`json_schema` as text, `regex`; a choice as a regex)."""
    if constraint.kind == "json":
        return {"json_schema": constraint.value}
    return {"regex": constraint.as_regex}


def http_structured(server: str, constraint: Constraint) -> dict[str, Any]:
    """The completions body's keys on each server: vLLM's `structured_outputs`, SGLang's `json_schema`/`regex`,
    llama.cpp's `json_schema`/`grammar`."""
    if server == "vllm":
        key = {"json": "json", "regex": "regex", "choice": "choice"}[constraint.kind]
        value = (
            constraint.schema
            if constraint.kind == "json"
            else constraint.choices
            if constraint.kind == "choice"
            else constraint.value
        )
        return {"structured_outputs": {key: value}}
    if server == "sglang":
        return sglang_structured(constraint)
    if constraint.kind == "json":
        return {"json_schema": constraint.schema}
    return {"grammar": choice_gbnf(constraint.choices)}


def choice_gbnf(choices: list[str]) -> str:
    """A GBNF grammar whose only sentences are the choices (llama.cpp)."""
    return "root ::= " + " | ".join(json.dumps(choice) for choice in choices)


def llamacpp_grammar(constraint: Constraint):
    """llama.cpp's `LlamaGrammar`: from the JSON schema (its own converter), or a choice's GBNF."""
    from llama_cpp import LlamaGrammar

    if constraint.kind == "json":
        return LlamaGrammar.from_json_schema(constraint.value, verbose=False)
    return LlamaGrammar.from_string(choice_gbnf(constraint.choices), verbose=False)
