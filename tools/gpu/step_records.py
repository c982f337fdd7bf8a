"""What a finished campaign step adds to the campaign's state: the engine's start phase by phase, the harness's
own engine-start times, and the observability checks (telemetry rows, the profiler window's files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.gpu.start_phases import start_phases


def step_records(engine: str, folder: Path, log: Path) -> dict[str, Any]:
    """What a finished step adds to the state: its engine's start phases (from the step's log and any server
    log), the harness's own engine-start times, and for SGLang's traffic step the observability checks."""
    texts = [
        path.read_text(errors="replace") for path in [log, *sorted(folder.rglob("server-*.log"))] if path.is_file()
    ]
    docs = [json.loads(path.read_text()) for path in sorted(folder.rglob("*.json")) if _is_results(path)]
    extra: dict[str, Any] = {
        "start_phases": start_phases(engine, "\n".join(texts)),
        "engine_start_s": [d["engine_start_s"] for d in docs if d.get("engine_start_s") is not None],
    }
    if any(cell.get("profiled") for doc in docs for cell in doc.get("cells", [])) or engine == "sglang":
        extra["checks"] = observability_checks(docs)
    return extra


def _is_results(path: Path) -> bool:
    try:
        return "cells" in json.loads(path.read_text())
    except (ValueError, OSError):
        return False


def observability_checks(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Did the engine's telemetry and its profiler window produce what they should? On record, not fatal."""
    cells = [cell for doc in docs for cell in doc.get("cells", [])]
    with_rows = [c["cell_id"] for c in cells if (c.get("telemetry") or {}).get("rows")]
    profiled = [c.get("profiled") for c in cells if c.get("profiled")]
    return {
        "cells": len(cells),
        "cells_with_telemetry": len(with_rows),
        "telemetry_ok": bool(cells) and len(with_rows) == len(cells),
        "profiler_started": any(p.get("started") for p in profiled),
        "profiler_files": sorted(f for p in profiled for f in p.get("files") or []),
        "profiler_ok": any(p.get("started") and p.get("files") for p in profiled),
    }
