"""The campaign's installer: each engine installs, in its own thread, as soon as all its parts are staged (the
device has 16 cores); each outcome lands in <campaign home>/installs/<engine>.json, which the units wait for."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from tools.gpu.device import install, status


def install_all(engines: tuple[str, ...], home: Path, device_home: Path, limit_s: float) -> None:
    """Install each engine as soon as all its parts are staged, each in its own thread (the device has 16 cores);
    each outcome lands in installs/<engine>.json, which the steps wait for."""
    done_dir = home / "installs"
    done_dir.mkdir(parents=True, exist_ok=True)
    started, pending, threads = time.monotonic(), list(engines), []
    while pending and time.monotonic() - started < limit_s:
        held = status(device_home)["engines"]
        for engine in [e for e in pending if e in held and held[e]["parts_held"] == held[e]["parts_total"]]:
            pending.remove(engine)
            thread = threading.Thread(target=install_one, args=(engine, done_dir, device_home, started), daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(1)
    for engine in pending:
        write_outcome(
            done_dir / f"{engine}.json", {"ok": False, "error": f"parts not all staged within {limit_s:.0f} s"}
        )
    for thread in threads:
        thread.join()


def install_one(engine: str, done_dir: Path, device_home: Path, started: float) -> None:
    t0 = time.monotonic()
    try:
        report = install(engine, device_home)
        # imports decide: the wheels name requirements no one carries (CuTe DSL, tilelang ...) on paths
        # we do not run, and those are listed in the report, not fatal
        outcome = {"ok": all(v == "ok" for v in report["imports"].values()), **report}
    except Exception as exc:  # a corrupt part or a broken unpack: this engine's steps are skipped
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    outcome.update(started_s=round(t0 - started, 1), wall_s=round(time.monotonic() - t0, 1))
    write_outcome(done_dir / f"{engine}.json", outcome)


def write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    """Whole or not at all: the units poll this file from another thread (`installed`). Not compare's
    write_json_atomic: its module pulls numpy, which the campaign does not import."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(outcome, indent=1))
    os.replace(tmp, path)


def installs(home: Path) -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((home / "installs").glob("*.json"))}


def installed(engine: str, home: Path) -> dict[str, Any] | None:
    path = home / "installs" / f"{engine}.json"
    return json.loads(path.read_text()) if path.is_file() else None
