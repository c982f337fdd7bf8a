"""One versioned results schema, written atomically after every cell.

Schema (version 1), top level: schema_version, status (running | complete | interrupted | failed),
error, metadata (environment), engine (describe()), model, scenario (after --quick and CLI
overrides), cells. Each cell: cell_id, config, complete, cache_resets, warmups (records),
requests (records), summary, prefix_cache, language, gpu, warnings. Records are raw samples; every
summary can be recomputed from them (`python -m compare.report FILE --recompute`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class ResultsFile:
    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "error": None,
            **header,
            "cells": [],
        }

    def add_cell(self, cell: dict[str, Any]) -> None:
        self.doc["cells"].append(cell)
        self.write()

    def finish(self, status: str, error: str | None = None) -> None:
        self.doc["status"] = status
        self.doc["error"] = error
        self.write()

    def write(self) -> None:
        write_json_atomic(self.path, self.doc)


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """A reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(doc, out, default=_jsonable, ensure_ascii=False, separators=(",", ":"))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def results_path(out_dir: Path, engine: str, scenario: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe_engine = engine.replace(":", "_").replace("/", "_")
    safe_scenario = Path(scenario).stem
    return out_dir / f"{safe_engine}_{safe_scenario}_{stamp}.json"


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')} is not {SCHEMA_VERSION}")
    return doc


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
