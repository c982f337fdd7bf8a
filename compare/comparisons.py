"""Pair stored runs that differ only in how the engine was driven, and compare them per cell.

A run records what it is a variant of (`variant` in the results file): the base engine, the kind
(inprocess, http, batch) and the base engine's given args. Two runs pair when they ran the same
scenario on the same model with the same `--quick`, of the same base engine and args: (inprocess,
http) gives the HTTP overhead, (inprocess, batch) the streaming fidelity. Any stored files pair, from
one command or from several.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Protocol

from compare.fidelity import streaming_fidelity
from compare.overhead import http_overhead

BUILDERS = {"http": ("http_overhead", http_overhead), "batch": ("streaming_fidelity", streaming_fidelity)}


class Run(Protocol):
    path: Any
    doc: dict[str, Any]


def pair_key(doc: dict[str, Any]) -> tuple:
    variant = doc["variant"]
    args = variant.get("engine_args")
    return (doc["scenario"]["name"], doc["model"].get("spec"), bool(doc.get("quick")), variant["of"],
            None if args is None else json.dumps(args, sort_keys=True))  # fmt: skip


def paired_runs(runs: Iterable[Run]) -> list[tuple[Run, Run, str]]:
    """(in-process run, variant run, variant kind) for every pair; a v1 file (args unknown) pairs on the rest."""
    runs = list(runs)
    base = {}
    for run in runs:
        if run.doc["variant"]["kind"] == "inprocess":
            base.setdefault(_loose(pair_key(run.doc)), []).append(run)
    pairs = []
    for run in runs:
        kind = run.doc["variant"]["kind"]
        if kind == "inprocess":
            continue
        key = pair_key(run.doc)
        for candidate in base.get(_loose(key), []):
            other = pair_key(candidate.doc)[-1]
            if key[-1] is None or other is None or other == key[-1]:
                pairs.append((candidate, run, kind))
                break
    return pairs


def _loose(key: tuple) -> tuple:
    return key[:-1]


def compare_pairs(runs: Iterable[Run]) -> list[tuple[str, dict[str, Any]]]:
    """(comparison name, comparison) for every pair found."""
    found = []
    for base, variant, kind in paired_runs(runs):
        name, build = BUILDERS[kind]
        found.append((name, build(base, variant)))
    return found


def comparison_lines(name: str, comparison: dict[str, Any]) -> list[str]:
    from compare.fidelity import fidelity_lines
    from compare.overhead import overhead_lines

    return (overhead_lines if name == "http_overhead" else fidelity_lines)(comparison)
