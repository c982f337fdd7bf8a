"""Structured output: the project's own constraints, which request gets which, and whether an output obeys it.

Twenty JSON schemas of growing complexity (flat, enums, optional fields, nested, arrays, `$defs`), a few regexes
and choices. Every string has a `maxLength`, every array a `maxItems` and every number a range, so a grammar
leaves a model of random weights a finite language and its output ends at EOS within the cell's output budget.

Modes, one cell each: `none` (unconstrained: the baseline the deltas are taken against), `cached` (one
constraint for every request, warmups included: the grammar is compiled before the measured part), `unique`
(a distinct constraint per request, as vLLM's json-unique: each schema gets a field of its own name, so every
request pays the compile).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from engines.constraints import Constraint

MODES = ("none", "cached", "unique")


def _s(n: int = 12) -> dict[str, Any]:
    return {"type": "string", "maxLength": n}


def _i(low: int = 0, high: int = 99) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **more) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **more,
    }


_PERSON = _obj({"name": _s(), "age": _i(0, 120)})
_ITEM = _obj({"sku": _s(8), "qty": _i(1, 9), "price": _i(0, 999)})
SCHEMAS: dict[str, dict[str, Any]] = {
    "01-one-string": _obj({"name": _s()}),
    "02-string-and-int": _PERSON,
    "03-bool": _obj({"title": _s(), "done": {"type": "boolean"}}),
    "04-enum": _obj({"color": {"enum": ["red", "green", "blue"]}, "shade": _i(0, 9)}),
    "05-optional": _obj({"id": _i(), "nickname": _s(8), "email": _s(16)}, required=["id"]),
    "06-five-flat": _obj({"a": _s(6), "b": _i(), "c": {"type": "boolean"}, "d": {"enum": ["x", "y"]}, "e": _i(0, 9)}),
    "07-nested-object": _obj({"user": _PERSON, "active": {"type": "boolean"}}),
    "08-array-of-strings": _obj({"tags": {"type": "array", "items": _s(6), "maxItems": 3}}),
    "09-array-of-ints": _obj({"scores": {"type": "array", "items": _i(0, 9), "minItems": 1, "maxItems": 4}}),
    "10-array-of-objects": _obj({"items": {"type": "array", "items": _ITEM, "maxItems": 2}}),
    "11-two-levels": _obj({"order": _obj({"id": _i(), "buyer": _PERSON})}),
    "12-const": _obj({"version": {"const": 2}, "kind": {"const": "event"}, "n": _i(0, 9)}),
    "13-nullable": _obj({"note": {"anyOf": [_s(8), {"type": "null"}]}, "count": _i(0, 9)}),
    "14-any-of": _obj({"value": {"anyOf": [_i(0, 99), {"type": "boolean"}]}}),
    "15-defs": {
        "$defs": {"point": _obj({"x": _i(-9, 9), "y": _i(-9, 9)})},
        **_obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}}),
    },
    "16-defs-array": {
        "$defs": {"person": _PERSON},
        **_obj({"team": _s(8), "members": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/person"}}}),
    },
    "17-enum-array": _obj(
        {"days": {"type": "array", "maxItems": 3, "items": {"enum": ["mon", "tue", "wed", "thu", "fri"]}}}
    ),
    "18-invoice": _obj(
        {
            "number": _s(8),
            "customer": _PERSON,
            "lines": {"type": "array", "items": _ITEM, "maxItems": 2},
            "paid": {"type": "boolean"},
        }
    ),
    "19-event": _obj(
        {
            "name": _s(),
            "when": _obj({"day": _i(1, 28), "month": _i(1, 12)}),
            "level": {"enum": ["low", "high"]},
            "tags": {"type": "array", "items": _s(6), "maxItems": 2},
            "note": _s(8),
        },
        required=["name", "when", "level"],
    ),
    "20-config": {
        "$defs": {"limit": _obj({"max": _i(0, 999), "unit": {"enum": ["s", "ms"]}})},
        **_obj(
            {
                "service": _s(8),
                "replicas": _i(1, 9),
                "timeout": {"$ref": "#/$defs/limit"},
                "retry": {"anyOf": [{"$ref": "#/$defs/limit"}, {"type": "null"}]},
                "labels": {"type": "array", "items": _s(6), "maxItems": 2},
            }
        ),
    },
}
REGEXES = {
    "date": r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])",
    "phone": r"\+82-10-[0-9]{4}-[0-9]{4}",
    "email": r"[a-z]{1,8}@[a-z]{1,8}\.(com|org|net)",
    "version": r"v[0-9]\.[0-9]{1,2}\.[0-9]{1,2}",
}
CHOICES = {
    "sentiment": ["positive", "negative", "neutral"],
    "yes-no": ["yes", "no"],
    "grade": ["A", "B", "C", "D", "F"],
}
CACHED = {"json": "07-nested-object", "regex": "date", "choice": "sentiment"}  # the one `cached` cells reuse


def library(kind: str) -> dict[str, str]:
    """Every constraint of a kind, by name, as its `Constraint.value` text."""
    if kind == "json":
        return {name: json.dumps(schema) for name, schema in SCHEMAS.items()}
    if kind == "regex":
        return dict(REGEXES)
    return {name: json.dumps(choices) for name, choices in CHOICES.items()}


def constraints_for(kind: str, mode: str, count: int, salt: str) -> list[Constraint | None]:
    """The constraint of each of `count` requests. `unique`: the kind's constraints in turn, each made distinct by
    `salt` and its index (a JSON schema gains an optional field of that name, a regex or a choice an alternative
    that a short output cannot reach first), so no engine finds its grammar compiled already."""
    if mode == "none":
        return [None] * count
    entries = library(kind)
    if mode == "cached":
        return [Constraint(kind, CACHED[kind], entries[CACHED[kind]])] * count
    names = list(entries)
    return [
        _unique(kind, names[index % len(names)], entries[names[index % len(names)]], f"{salt}{index}")
        for index in range(count)
    ]


def _unique(kind: str, name: str, value: str, tag: str) -> Constraint:
    tag = re.sub(r"[^a-z0-9]", "", tag.lower())
    if kind == "json":
        schema = json.loads(value)
        schema["properties"] = {**schema["properties"], f"x_{tag}": {"type": "integer", "minimum": 0, "maximum": 9}}
        return Constraint(kind, f"{name}/u{tag}", json.dumps(schema))
    if kind == "regex":
        return Constraint(kind, f"{name}/u{tag}", f"({value}|zz{tag}[0-9])")
    return Constraint(kind, f"{name}/u{tag}", json.dumps([*json.loads(value), f"zz-{tag}"]))


def with_constraints(plan, kind: str):
    """A structured cell's requests, each with its constraint: a `cached` cell's warmups share its one constraint
    (so its grammar is compiled before the measured part), a `unique` cell's warmups have their own."""
    mode = plan.spec.structured
    if mode in (None, "none"):
        return plan

    def constrained(requests, salt):
        found = constraints_for(kind, mode, len(requests), salt)
        return tuple(dataclasses.replace(r, constraint=c) for r, c in zip(requests, found))

    cell = plan.spec.cell_id
    return dataclasses.replace(
        plan, warmups=constrained(plan.warmups, f"{cell}w"), requests=constrained(plan.requests, cell)
    )


def check_output(constraint: Constraint, text: str | None) -> dict[str, Any]:
    """Whether the output obeys its constraint: `parses` (JSON: it loads; regex and choice: as `valid`) and `valid`
    (JSON: the schema validates it, with jsonschema; regex: a full match; choice: one of them). None where the
    engine gave no text (the null engine, a fake, emits counts only)."""
    if text is None:
        return {"parses": None, "valid": None}
    if constraint.kind != "json":
        valid = re.fullmatch(constraint.as_regex, text) is not None
        return {"parses": valid, "valid": valid}
    try:
        instance = json.loads(text)
    except ValueError as exc:
        return {"parses": False, "valid": False, "error": f"does not parse: {exc}"[:200]}
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(constraint.schema).iter_errors(instance))
    return {"parses": True, "valid": error is None, **({"error": error.message[:200]} if error is not None else {})}
