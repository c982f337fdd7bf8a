"""Any engine knob as `--engine-arg KEY=VALUE`: the valid keys and their types come from the engine's own
signature (vLLM's `AsyncEngineArgs` dataclass, SGLang's `ServerArgs` (a field list read from the pinned
source when sglang is not installed), llama.cpp's `Llama(...)`, Ollama's `Options`), not from a list of ours.

A value is typed from the field's annotation, as text (`int | None`, `Literal['fcfs', 'priority']`,
`dict[str, Any] | CompilationConfig | None`): none/null for optional fields, JSON for dict and list fields
(and config objects), true/false for booleans, then int, float, a Literal's choices, or str. An unknown key
or a value that does not parse is a UsageError naming the three nearest keys, or the type.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from engines.base import UsageError, check_keys, resolve_engine_args

_TRUE, _FALSE, _NONE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}, {"none", "null"}
_JSON_TYPES = re.compile(r"\b(dict|list|tuple|set|Dict|List|Tuple|Set|[A-Z]\w*Config)\b")


def annotation_text(annotation: Any) -> str:
    """A field's annotation as text, whether the dataclass kept strings (`from __future__ import annotations`)
    or types."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def dataclass_fields(cls) -> dict[str, str]:
    """Field name -> annotation text, for every init field of a dataclass."""
    return {f.name: annotation_text(f.type) for f in dataclasses.fields(cls) if f.init}


def dataclass_defaults(cls) -> dict[str, Any]:
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
    return defaults


def parse_typed(engine: str, key: str, raw: str, annotation: str) -> Any:
    """`raw` as the annotation says; a UsageError naming the type where it does not parse."""
    text, lowered = raw.strip(), raw.strip().lower()
    optional = "None" in annotation or "Optional" in annotation
    if lowered in _NONE and optional:
        return None
    if _JSON_TYPES.search(annotation) and text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"engine {engine!r}: {key}={raw!r} is not valid JSON ({exc.msg}); {key} is {annotation}"
            ) from None
    literal = re.search(r"Literal\[(.*?)\]", annotation)
    if literal:
        choices = [c.strip().strip("'\"") for c in literal.group(1).split(",")]
        if text in choices:
            return text
    if re.search(r"\bbool\b", annotation) and lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    for name, cast in (("int", int), ("float", float)):
        if re.search(rf"\b{name}\b", annotation):
            try:
                return cast(text)
            except ValueError:
                pass
    if re.search(r"\bstr\b", annotation) or annotation in ("Any", ""):
        return raw
    raise UsageError(f"engine {engine!r}: {key}={raw!r} does not parse as {annotation}")


def split_args(engine: str, given: dict[str, str], ours: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The given args that are not ours (the harness's own defaults), typed by the engine's fields."""
    check_keys(engine, given, {**ours, **fields})
    return {key: parse_typed(engine, key, raw, fields[key]) for key, raw in given.items() if key not in ours}


def resolve_args(engine: str, given: dict[str, str], ours: dict[str, Any], fields: dict[str, str]) -> tuple[dict, dict]:
    """(our args, cast to our defaults' types; every other given arg, typed by the engine's fields). Checks only:
    a sweep calls it for every point before the first runs."""
    return resolve_engine_args(engine, {k: v for k, v in given.items() if k in ours}, ours), split_args(
        engine, given, ours, fields
    )
