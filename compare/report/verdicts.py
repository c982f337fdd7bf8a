"""What a hypothesis verdict holds, and how a verdict finds its data among stored runs.

Runs are compared only within one group: the same hardware and the same model. Within a group an
in-process run is preferred over an HTTP one, a full run over a `--quick` one, and the newest last.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from compare.analysis.runsets import engine_of, hardware, mode_of, precision
from compare.analysis.stats import Interval

BATCHING_ENGINES = ("sglang", "vllm")
SEQUENTIAL_STAND_INS = ("ollama", "llamacpp")  # llamacpp: llama.cpp in-process, the runner inside Ollama


@dataclass
class Verdict:
    id: str
    hypothesis: str  # as the design doc states it
    claim: str  # the measurable claim the data is held to
    verdict: str = "not testable"  # supported | not supported | inconclusive | not testable
    effect: str = ""
    ci: Interval | None = None
    threshold: float | None = None
    data: list[str] = field(default_factory=list)  # files and cells used
    details: list[str] = field(default_factory=list)
    missing: str | None = None  # the run that would make it testable, as a command
    caveats: list[str] = field(default_factory=list)


def group_key(run) -> tuple[str, str]:
    return hardware(run.doc), run.doc["model"].get("spec")


def groups(runs: list) -> dict[tuple[str, str], list]:
    found = defaultdict(list)
    for run in runs:
        found[group_key(run)].append(run)
    return found


def best(runs: list, engine: str, scenario: str):
    """The run to judge with: this engine and scenario, in-process first, full before --quick, newest."""
    candidates = [
        r
        for r in runs
        if engine_of(r) == engine
        and r.doc["scenario"]["name"] == scenario
        and mode_of(r) in ("inprocess", "http")
        and r.doc["cells"]
    ]
    if not candidates:
        return None
    return max(
        candidates, key=lambda r: (mode_of(r) == "inprocess", not r.doc.get("quick"), r.doc["metadata"]["date_utc"])
    )


def pick(runs: list, engines_needed: list[tuple[str, ...]], scenario: str) -> list | None:
    """One run per slot (each slot: engines that may fill it, in order), all from one group; the group whose
    runs have the most requests wins."""
    options = []
    for group in groups(runs).values():
        chosen = []
        for slot in engines_needed:
            run = next((r for engine in slot if (r := best(group, engine, scenario)) is not None), None)
            if run is None or run in chosen:
                break
            chosen.append(run)
        else:
            options.append(chosen)
    if not options:
        return None
    return max(options, key=lambda chosen: sum(len(c["requests"]) for r in chosen for c in r.doc["cells"]))


def cell(run, cell_id: str) -> dict | None:
    return next((c for c in run.doc["cells"] if c["cell_id"] == cell_id), None)


def cite(run, cell_ids: list[str]) -> str:
    return f"{run.path} ({', '.join(cell_ids)})"


def caveats(chosen: list) -> list[str]:
    notes = []
    precisions = {engine_of(r): precision(r.doc) for r in chosen}
    if len(set(precisions.values())) > 1:
        notes.append(
            "precision differs: "
            + ", ".join(f"{k} {v}" for k, v in precisions.items())
            + " (a GGUF q4 reads a quarter of bf16's bytes per token)"
        )
    if any(r.doc["model"].get("kind") == "synthetic" for r in chosen):
        notes.append("synthetic model (random or dummy weights): timings are real, generated text is not")
    quick = [engine_of(r) for r in chosen if r.doc.get("quick")]
    if quick:
        notes.append(f"--quick runs ({', '.join(quick)}): few requests per cell, wide intervals")
    if any(engine_of(r) == "llamacpp" for r in chosen):
        notes.append("llamacpp stands in for Ollama: the same llama.cpp runner, without Ollama's server and HTTP layer")
    if any(mode_of(r) == "http" for r in chosen):
        notes.append("some runs are through the engine's HTTP server: their latencies include the HTTP layer")
    return notes


def fmt_ci(ci: Interval | None, digits: int = 2) -> str:
    if ci is None:
        return "-"
    if ci.high == float("inf"):
        return f"{ci.value:.{digits}f} (too few requests for an interval)"
    return f"{ci.value:.{digits}f} [95% CI {ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def common_levels(chosen: list, scenario_cells) -> list[int]:
    levels = [set(c["config"]["concurrency"] for c in scenario_cells(r)) for r in chosen]
    return sorted(set.intersection(*levels)) if levels else []


def finite(values) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    return data[np.isfinite(data)]
