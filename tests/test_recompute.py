"""One cell result, one builder (compare/analysis/cell.py): `--recompute` derives every committed results file's
figures again from its raw records and gets the stored ones back, figure for figure; a fresh run (telemetry, goodput,
energy, warnings) recomputes to itself."""

import json
from pathlib import Path

import pytest

from compare.analysis.cell import recompute
from compare.results.store import _jsonable, load_run, read_text
from tests.test_cli import cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
DERIVED = (
    "summary",
    "prefix_cache",
    "language",
    "traffic",
    "structured",
    "warnings",
    "slo",
    "energy",
    "telemetry",
    "speculative",
    "steps",
    "steady",
)
# figures the schema gained after a committed file was written: present once recomputed, absent from the file
ADDED_SINCE = {
    "summary.send_lag_ms": "open-loop send lag (2026-11-24), after the H100 and CPU files of 2026-11-22/23",
    "summary.output_tokens": "per-request output lengths (2026-12-07, outputs that end at EOS)",
    "steady": "steady windows: warm-up and drain cut off (2026-12-07, compare/analysis/steady.py)",
}


# warnings reworded since a committed file was written: (old start, new start, why)
REWORDED_SINCE = (
    (
        "warm cache: ",
        "warm cache by design: every request of the cell asks the same text",
        "language-pairs cells (korean, speculative) repeat one text per cell: their cache is warm by design, and the "
        "old wording said their prompts were distinct (2026-12-07)",
    ),
)


def _reworded(stored: list, recomputed: list) -> list:
    """The stored warnings with each reworded one in its current words, where the recomputed list has them."""
    current = list(stored)
    for old, new, _ in REWORDED_SINCE:
        for index, text in enumerate(current):
            match = next((r for r in recomputed if r.startswith(new)), None)
            if text.startswith(old) and match is not None:
                current[index] = match
    return current


def _differences(stored, recomputed, path: str = "") -> list[tuple[str, str]]:
    """(path, "new" | "gone" | "changed") wherever the two differ; numbers must be equal, not close."""
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        found = []
        for key in sorted(set(stored) | set(recomputed), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in stored:
                found.append((where, "new"))
            elif key not in recomputed:
                found.append((where, "gone"))
            else:
                found += _differences(stored[key], recomputed[key], where)
        return found
    if path.endswith("warnings") and isinstance(stored, list):
        stored = _reworded(stored, recomputed)
    if isinstance(stored, list) and isinstance(recomputed, list) and len(stored) == len(recomputed):
        return [d for a, b in zip(stored, recomputed) for d in _differences(a, b, path)]
    return [] if stored == recomputed else [(path, "changed")]


def _derived(doc: dict) -> list[dict]:
    return json.loads(json.dumps([{k: c[k] for k in DERIVED if k in c} for c in doc["cells"]], default=_jsonable))


def _inputs_only(cell: dict) -> None:
    """The cell as the run recorded it before anything was derived: every derived part removed, in place."""
    for key in ("summary", "prefix_cache", "language", "traffic", "structured", "warnings", "speculative", "steps"):
        cell.pop(key, None)
    (cell.get("telemetry") or {}).pop("summary", None)
    if "slo" in cell:
        cell["slo"] = {"limits": cell["slo"]["limits"]}
    for source in (cell.get("energy") or {}).values():
        for key in ("output_tokens", "num_requests", "j_per_output_token", "j_per_request"):
            if isinstance(source, dict):
                source.pop(key, None)


def _recomputed_differences(path: Path) -> list[tuple[str, str]]:
    run = load_run(path)
    stored = _derived(run.doc)
    for cell in run.doc["cells"]:
        _inputs_only(cell)
    recomputed = _derived(recompute(run.doc))
    return [d for a, b in zip(stored, recomputed) for d in _differences(a, b)]


def test_every_committed_results_file_recomputes_to_its_stored_figures():
    found = [*(ROOT / "results").rglob("*_*_*.json"), *(ROOT / "results").rglob("*_*_*.json.xz")]
    files = [p for p in sorted(found) if "cells" in json.loads(read_text(p))]
    assert len(files) >= 40
    for path in files:
        differences = _recomputed_differences(path)
        unnamed = [d for d in differences if d[1] != "new" or d[0] not in ADDED_SINCE]
        assert not unnamed, f"{path.relative_to(ROOT)}: {unnamed[:5]}"


def test_a_fresh_run_recomputes_to_itself_telemetry_goodput_energy_and_warnings_included(cli, tmp_path):  # noqa: F811
    code, _, err = cli("--engine", "null", "--scenario", "smoke", "--slo", "ttft_ms=5", "--out", str(tmp_path / "o"))
    assert code == 0, err
    (path,) = (tmp_path / "o").glob("null_smoke_*.json")
    doc = json.loads(path.read_text())
    assert all({"slo", "energy", "telemetry", "warnings"} <= set(cell) for cell in doc["cells"])
    assert _recomputed_differences(path) == []
