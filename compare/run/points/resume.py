"""`--resume DIR`: find the runs already in DIR, so complete ones are skipped and partial ones continue.

A stored run is the same run when its engine name, variant (base engine, kind, engine args), scenario
(after --quick and overrides), model and --quick all match. A partial run continues in its own file: its
complete cells stay as they were measured, an unfinished cell is dropped and run again from its start, and
the file records each resume (when, on which machine, which cells were kept and dropped).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compare.results.store import SCHEMA_VERSION, ResultsFile
from compare.run.instruments import environment


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def same_run(
    doc: dict[str, Any], run_name: str, variant: dict[str, Any], scenario: dict[str, Any], model_spec: str, quick: bool
) -> bool:
    return (
        doc.get("schema_version") == SCHEMA_VERSION
        and doc.get("run_name", doc.get("engine", {}).get("name")) == run_name
        and doc.get("variant") == _plain(variant)
        and doc.get("scenario") == _plain(scenario)
        and doc.get("model", {}).get("spec") == model_spec
        and doc.get("quick") == quick
    )


def find_previous(
    out_dir: Path, run_name: str, variant: dict[str, Any], scenario: dict[str, Any], model_spec: str, quick: bool
) -> tuple[Path, dict[str, Any]] | None:
    """The newest stored file of this same run in out_dir, or None; unreadable files are passed over."""
    found = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and same_run(doc, run_name, variant, scenario, model_spec, quick):
            found.append((path.stat().st_mtime_ns, path, doc))
    if not found:
        return None
    _, path, doc = max(found, key=lambda item: item[0])
    return path, doc


def continue_file(path: Path, doc: dict[str, Any]) -> ResultsFile:
    """The partial file, reopened: complete cells kept as measured, the rest dropped to be run again."""
    kept = [c for c in doc["cells"] if c.get("complete")]
    dropped = [c["cell_id"] for c in doc["cells"] if not c.get("complete")]
    results = ResultsFile(path, {})
    results.doc = {**doc, "status": "running", "error": None, "cells": kept}
    results.doc.setdefault("resumed", []).append(
        {
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "previous_status": doc.get("status"),
            "kept_cells": [c["cell_id"] for c in kept],
            "dropped_cells": dropped,
            "metadata": environment.collect(),
        }
    )
    return results


def kept_cell_ids(results: ResultsFile) -> dict[str, str]:
    """cell id -> prompts hash of the cells a resumed file already holds."""
    return {c["cell_id"]: c["config"].get("prompts_sha256") for c in results.doc["cells"]}
