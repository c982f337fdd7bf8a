"""On the lent GPU machine (no network): take in the carried parts, install, and check every import.

    python3 -m tools.gpu.device stage --from .gpu/calls/01   # the parts one call carries (any engines)
    python3 -m tools.gpu.device stage --engine vllm          # or one engine's parts from .gpu/carry/vllm/
    python3 -m tools.gpu.device install --engine vllm        # join, verify, unpack, check (stage calls it)
    python3 -m tools.gpu.device status                       # what this machine holds (empty after it went cold)

Parts arrive as `<folder>/<engine>/part-NNN` in the call's copy of the repo, next to `manifest.json`
(tools/gpu/calls.py bins them into one folder per call), and are kept in /tmp/enginebench-gpu/<engine>/parts
while the machine stays warm. `install` unpacks
into /tmp/enginebench-gpu/<engine>/site (used through PYTHONPATH, never over the image's packages) and
reports a missing piece by name: a part, a distribution that a staged wheel requires, or a module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.gpu.pack import extract, join, read_manifest, sha256_file
from tools.gpu.wheelsets import canonical

HOME = Path(os.environ.get("ENGINEBENCH_GPU_HOME", "/tmp/enginebench-gpu"))  # a fake device sets its own
CARRY = Path(".gpu/carry")


def engine_home(engine: str, home: Path = HOME) -> Path:
    return home / engine


def stage(engine: str, carry: Path = CARRY, home: Path = HOME) -> dict[str, Any]:
    """Copy the carried parts in; returns which parts are held and which are still missing."""
    source, target = carry / engine, engine_home(engine, home) / "parts"
    manifest = read_manifest(source / "manifest.json")
    target.mkdir(parents=True, exist_ok=True)
    held_manifest = engine_home(engine, home) / "manifest.json"
    if held_manifest.is_file() and read_manifest(held_manifest)["bundle_sha256"] != manifest["bundle_sha256"]:
        shutil.rmtree(target)  # parts of another build: start over
        target.mkdir(parents=True)
    shutil.copyfile(source / "manifest.json", held_manifest)
    for part in manifest["parts"]:
        carried = source / part["file"]
        if carried.is_file():
            if sha256_file(carried) != part["sha256"]:
                raise ValueError(f"carried {part['file']} is corrupt; run prepare again and re-send it")
            shutil.copyfile(carried, target / part["file"])
    held = [p["file"] for p in manifest["parts"] if (target / p["file"]).is_file()]
    missing = [p["file"] for p in manifest["parts"] if p["file"] not in held]
    return {"engine": engine, "held": held, "missing": missing}


def stage_call(folder: Path, home: Path = HOME) -> list[dict[str, Any]]:
    """Every engine's parts in one call's folder (.gpu/calls/NN/<engine>/)."""
    engines = sorted(p.parent.name for p in folder.glob("*/manifest.json"))
    if not engines:
        raise FileNotFoundError(f"{folder} holds no <engine>/manifest.json: carry a folder that tools.gpu.calls wrote")
    return [stage(engine, carry=folder, home=home) for engine in engines]


def install(engine: str, home: Path = HOME, python: str = sys.executable) -> dict[str, Any]:
    base = engine_home(engine, home)
    manifest = read_manifest(base / "manifest.json")
    bundle, site = base / "bundle.tar.xz", base / "site"
    join(base / "parts", manifest, bundle)
    shutil.rmtree(site, ignore_errors=True)
    num_files = extract(bundle, site)
    bundle.unlink()
    missing, conflicts = unmet_requirements(site)
    with ThreadPoolExecutor(max_workers=len(manifest["imports"]) or 1) as pool:  # each import is its own interpreter
        checked = pool.map(lambda module: check_import(python, module, site), manifest["imports"])
    imports = dict(zip(manifest["imports"], checked))
    return {
        "engine": engine,
        "site": str(site),
        "num_files": num_files,
        "missing_distributions": missing,
        "version_conflicts": conflicts,
        "imports": imports,
    }


def unmet_requirements(site: Path, search_path: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Requirements of the staged distributions: (missing from both the staged tree and the image,
    present but at a version outside the pin). The staged tree comes first, as on PYTHONPATH."""
    from packaging.requirements import Requirement

    available: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site), *(sys.path if search_path is None else search_path)]):
        if dist.metadata["Name"]:
            available.setdefault(canonical(dist.metadata["Name"]), dist.version)
    missing, conflicts = set(), set()
    for dist in metadata.distributions(path=[str(site)]):
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            have = available.get(canonical(requirement.name))
            if have is None:
                missing.add(f"{requirement.name} (required by {dist.metadata['Name']})")
            elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
                conflicts.add(f"{requirement.name} {have} (not {requirement.specifier}, for {dist.metadata['Name']})")
    return sorted(missing), sorted(conflicts)


def check_import(python: str, module: str, site: Path) -> str:
    """'ok', or the missing module's name, or the error's last line."""
    env = {**os.environ, "PYTHONPATH": f"{site}:{Path.cwd()}"}
    result = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, env=env)
    if result.returncode == 0:
        return "ok"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {result.returncode}"
    found = re.search(r"No module named '([^']+)'", last)
    return f"missing module {found.group(1)}" if found else last[:300]


def status(home: Path = HOME) -> dict[str, Any]:
    engines = {}
    for base in sorted(home.glob("*/manifest.json")):
        manifest = read_manifest(base)
        parts = base.parent / "parts"
        held = [p["file"] for p in manifest["parts"] if (parts / p["file"]).is_file()]
        engines[base.parent.name] = {
            "parts_held": len(held),
            "parts_total": len(manifest["parts"]),
            "installed": (base.parent / "site").is_dir(),
        }
    return {"home": str(home), "engines": engines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.device", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=("stage", "install", "status"))
    parser.add_argument("--engine", choices=("vllm", "sglang"))
    parser.add_argument(
        "--from", dest="folder", type=Path, help="stage: a call's folder (.gpu/calls/NN), every engine in it"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="stage: only hold the part (a running campaign installs once all are held)",
    )
    args = parser.parse_args(argv)
    if args.verb == "status":
        print(json.dumps(status(), indent=1))
        return 0
    if args.verb == "stage" and args.folder:
        for held in stage_call(args.folder):
            print(
                f"stage {held['engine']}: holding {len(held['held'])} of {len(held['held']) + len(held['missing'])} "
                f"parts" + (f"; still to send: {', '.join(held['missing'])}" if held["missing"] else "; all held"),
                flush=True,
            )
        return 0
    if not args.engine:
        parser.error("--engine (or stage --from FOLDER) is required")
    if args.verb == "stage":
        held = stage(args.engine)
        print(
            f"stage {args.engine}: holding {len(held['held'])} of {len(held['held']) + len(held['missing'])} parts"
            + (
                f"; still to send: {', '.join(held['missing'])}"
                if held["missing"]
                else ("; held" if args.no_install else "; installing")
            ),
            flush=True,
        )
        if held["missing"] or args.no_install:
            return 0
    report = install(args.engine)
    print(json.dumps(report, indent=1))
    broken = report["missing_distributions"] or any(v != "ok" for v in report["imports"].values())
    if broken:
        print(
            f"install {args.engine}: INCOMPLETE: "
            + "; ".join(
                report["missing_distributions"] + [f"{m}: {v}" for m, v in report["imports"].items() if v != "ok"]
            )
        )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
