"""Pair stored runs that differ only in how the engine was driven, and compare them per cell.

A run records what it is a variant of (`variant` in the results file): the base engine, the kind
(inprocess, http, batch) and the base engine's given args. Two runs pair when they ran the same
scenario on the same model and hardware with the same `--quick`, of the same base engine and args:
(inprocess, http) gives the HTTP overhead, (inprocess, batch) the streaming fidelity. Any stored files
pair, from one command or from several; where several in-process runs fit, the one with measured
requests, run closest in time, is taken; a run where every request failed pairs with nothing.
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
    return (doc["scenario"]["name"], doc["model"].get("spec"), bool(doc.get("quick")), _hardware(doc), variant["of"],
            None if args is None else json.dumps(args, sort_keys=True))  # fmt: skip


def _hardware(doc: dict[str, Any]) -> str:
    gpus = (doc.get("metadata") or {}).get("gpus") or {}
    if gpus.get("available"):
        return ",".join(d["name"] for d in gpus.get("devices", []))
    return str(((doc.get("metadata") or {}).get("cpu") or {}).get("model"))


def _usable(run) -> bool:
    return any(r.ok for cell in run.doc["cells"] for r in cell["requests"])


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
        matching = [c for c in base.get(_loose(key), []) if (key[-1] is None or pair_key(c.doc)[-1] in (None, key[-1]))
                    and _usable(c)]  # fmt: skip
        if matching and _usable(run):  # both measured something; of several bases, the one run closest in time
            when = run.doc.get("metadata", {}).get("date_utc", "")
            pairs.append((min(matching, key=lambda c: _distance(c, when)), run, kind))
    return pairs


def _distance(run, when: str) -> float:
    from datetime import datetime

    try:
        return abs((datetime.fromisoformat(run.doc["metadata"]["date_utc"]) - datetime.fromisoformat(when)).total_seconds())
    except (KeyError, ValueError, TypeError):
        return float("inf")


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
