"""Sets of stored runs: what each is (engine, mode, precision, hardware), whether a set may be compared
row against row, and the side-by-side tables of a scenario (engines as columns, metrics as rows)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from compare.analysis.agreement import agreement_text, cell_agreement
from compare.analysis.cellstats import Figure, cell_figures
from compare.analysis.checks import is_client_bound
from compare.analysis.steady import steady_views


@dataclass
class ScenarioTable:
    scenario: str
    columns: list[str]  # run labels
    notes: list[str]  # comparability, said in the table's header
    cells: dict[str, dict[str, dict[str, Figure]]] = field(default_factory=dict)  # cell -> row -> column -> figure
    client_bound: dict[str, list[str]] = field(default_factory=dict)  # cell -> columns whose harness was the bottleneck
    agreement: dict[str, list[str]] = field(
        default_factory=dict
    )  # cell -> each other column's outputs against the first's
    steady: set[str] = field(default_factory=set)  # cells whose figures are every run's steady window


def engine_of(run) -> str:
    return run.doc["variant"]["of"]


def mode_of(run) -> str:
    return run.doc["variant"]["kind"]


def label(run) -> str:
    kind = mode_of(run)
    return engine_of(run) + ("" if kind == "inprocess" else f"-{kind}")


def hardware(doc: dict[str, Any]) -> str:
    gpus = doc["metadata"].get("gpus") or {}
    if gpus.get("available") and gpus.get("devices"):
        names = [d["name"] for d in gpus["devices"]]
        return f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
    cpu = doc["metadata"].get("cpu") or {}
    return f"CPU {cpu.get('model')} x{cpu.get('affinity_cores')}"


def precision(doc: dict[str, Any]) -> str:
    model = doc["engine"].get("model") or {}
    return str(model.get("quantization") or model.get("dtype") or "unknown")


def prompts_key(doc: dict[str, Any]) -> str:
    """What makes two runs send the same requests: each cell's planned prompts (hashed where recorded) and sizes."""
    cells = [
        {
            k: c["config"].get(k)
            for k in (
                "prompts_sha256",
                "prompt_tokens",
                "output_tokens",
                "num_requests",
                "prompt_mode",
                "concurrency",
                "language",
                "kind",
            )
        }
        for c in doc["cells"]
    ]
    seed = doc["scenario"].get("seed")
    return hashlib.sha256(json.dumps([seed, cells], sort_keys=True).encode()).hexdigest()[:12]


def differences(runs: list) -> list[str]:
    """What differs among runs that a table puts side by side (empty: directly comparable)."""
    notes = []
    for name, key in (("model", lambda d: d["model"].get("spec")), ("precision", precision), ("hardware", hardware)):
        values = {label(r): key(r.doc) for r in runs}
        if len(set(values.values())) > 1:
            notes.append(f"{name} differs: " + "; ".join(f"{k} {v}" for k, v in values.items()))
    if len({prompts_key(r.doc) for r in runs}) > 1:
        notes.append("prompts or cell sizes differ (--quick, overrides or seed): compare cell by cell with care")
    return notes


def usable(run) -> bool:
    """A run with at least one measured request (a run where all failed is listed, not tabled)."""
    return any(r.ok for cell in run.doc["cells"] for r in cell["requests"])


def unique_labels(runs: list) -> dict[int, str]:
    """A column name per run: the engine (and mode); where two runs of one scenario share it, what tells them
    apart is added: the hardware, else the date, else the file's time stamp."""
    names: dict[int, str] = {}
    by_key = defaultdict(list)
    for run in runs:
        by_key[(run.doc["scenario"]["name"], label(run))].append(run)
    for (_, name), group in by_key.items():
        for run in group:
            names[id(run)] = name + _suffix(run, group)
    return names


def _suffix(run, group: list) -> str:
    """The fewest of the sweep point's own args, hardware, date and file stamp that tell this run apart from the
    others in the group."""
    if len(group) == 1:
        return ""
    parts = (
        lambda r: " ".join(
            f"{k}={v}" for k, v in sorted(((r.doc.get("variant") or {}).get("engine_args") or {}).items())
        ),
        lambda r: hardware(r.doc).removeprefix("1 x "),
        lambda r: r.doc["metadata"]["date_utc"][:10],
        lambda r: r.path.stem.rsplit("_", 1)[-1],
    )
    chosen: list = []
    for part in parts:
        if len({part(r) for r in group}) > 1:
            chosen.append(part)
        if sum(all(p(other) == p(run) for p in chosen) for other in group) == 1:
            break
    return " (" + ", ".join(p(run) for p in chosen) + ")"


def scenario_tables(runs: list, names: dict[int, str]) -> list[ScenarioTable]:
    """One table per scenario and machine (hardware and model) over its runs with measured requests; cells in
    the order the runs have them."""
    by_table = defaultdict(list)
    for run in runs:
        if usable(run):
            by_table[(run.doc["scenario"]["name"], hardware(run.doc), run.doc["model"].get("spec"))].append(run)
    tables = []
    for (scenario, machine, model), group in by_table.items():
        table = ScenarioTable(f"{scenario}: {model} on {machine}", [names[id(r)] for r in group], differences(group))
        cell_ids = list(dict.fromkeys(c["cell_id"] for r in group for c in r.doc["cells"]))
        for cell_id in cell_ids:
            rows: dict[str, dict[str, Figure]] = defaultdict(dict)
            first = None
            present = {id(r): c for r in group for c in r.doc["cells"] if c["cell_id"] == cell_id}
            views, steady = steady_views(list(present.values()))
            if steady:  # every run has a steady window here: the table reads those (steady.py)
                table.steady.add(cell_id)
            shown_by_run = dict(zip(present, views))
            for run in group:
                if id(run) not in present:
                    continue
                cell, shown = present[id(run)], shown_by_run[id(run)]
                for row, figure in cell_figures(shown).items():
                    rows[row][names[id(run)]] = figure
                if is_client_bound(cell):
                    table.client_bound.setdefault(cell_id, []).append(names[id(run)])
                if first is None:
                    first = (names[id(run)], cell)
                elif (agreement := cell_agreement(first[1], cell)) is not None:
                    text = f"{names[id(run)]} vs {first[0]}: {agreement_text(agreement)}"
                    table.agreement.setdefault(cell_id, []).append(text)
            table.cells[cell_id] = dict(rows)
        tables.append(table)
    return tables
