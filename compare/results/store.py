"""One versioned results schema, written atomically after every cell.

Schema version 2, top level: schema_version, status (running | complete | interrupted | failed), error,
metadata (environment), engine (describe()), model, scenario (after --quick and CLI overrides), quick,
variant (what this run is a variant of: {"of": base engine, "kind": inprocess | http | batch,
"engine_args": the base engine's given args}), cells. Each cell: cell_id, config, complete,
cache_resets, warmups (records), requests (records), summary, prefix_cache, language, gpu, warnings.
Records are raw samples (compare/results/records.py); every summary can be recomputed from them
(`python -m compare.report FILE --recompute`). Version 1 files (per-token `token_ns`, no variant) still
load: their records become the same typed records, and their variant is read from the engine's name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compare.results.records import RequestRecord

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
VARIANT_SUFFIXES = {"-http": "http", "-batch": "batch"}  # how version 1 named a variant


@dataclass
class StoredRun:
    """A results file and its document (records typed); ResultsFile has the same two attributes."""

    path: Path
    doc: dict[str, Any]


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


def read_text(path: Path) -> str:
    """A results file's text; `.json.xz`: one stored xz-compressed (committed results that would weigh on the GPU
    kit's per-call tree, tools/gpu/calls.py)."""
    if Path(path).suffix == ".xz":
        import lzma

        with lzma.open(path, "rt", encoding="utf-8") as stream:
            return stream.read()
    return Path(path).read_text(encoding="utf-8")


def load(path: Path) -> dict[str, Any]:
    """A results document of any readable version, with typed records and a variant."""
    doc = json.loads(read_text(path))
    if doc.get("schema_version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')} is not one of {READABLE_VERSIONS}")
    for cell in doc["cells"]:
        cell["requests"] = [RequestRecord.from_json(r) for r in cell["requests"]]
        cell["warmups"] = [RequestRecord.from_json(r) for r in cell.get("warmups") or []]
    if "variant" not in doc:  # schema 1: the run's name (X-http, X-batch) is the file name's first part
        run_name = Path(path).name.split("_")[0]
        doc["variant"] = variant_from_name(
            run_name if run_name.endswith(tuple(VARIANT_SUFFIXES)) else doc["engine"]["name"]
        )
    return doc


def load_run(path: Path) -> StoredRun:
    return StoredRun(Path(path), load(path))


def variant_from_name(engine: str) -> dict[str, Any]:
    for suffix, kind in VARIANT_SUFFIXES.items():
        if engine.endswith(suffix):
            return {"of": engine.removesuffix(suffix), "kind": kind, "engine_args": None}
    return {"of": engine, "kind": "inprocess", "engine_args": None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, RequestRecord):
        return value.to_json()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
