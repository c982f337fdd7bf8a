"""The lease's staging calls, sized by the device tool's real limits, not by a guess.

A device call sends the working tree as the tool sees it (tracked files, untracked files git does not ignore,
and shared/) plus the carried paths, 64 MiB in all. The tree here is ~20 MiB (results/ alone 17 MiB), so a
part may hold what is left: `part_budget` measures the tree and keeps a slack for manifests and for a tree that
grows a little between `prepare` and the lease. `plan_calls` bins every engine's parts, first fit in staging
order, into calls of at most that budget; each call's parts are hard-linked into one folder, `.gpu/calls/NN`,
so a call carries one path (the tool allows 8).

    python3 -m tools.gpu.calls            # the call table: carry folder, parts, bytes, tree bytes, total
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.gpu.pack import read_manifest

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
CALLS = Path(".gpu/calls")
# a carried compile cache first (the campaign unpacks it before any engine starts), then SGLang, whose start is the
# longest (flashinfer compiles its kernels), then vLLM
ENGINES = ("sglang", "vllm")
STAGING_ORDER = ("compile-cache", *ENGINES)
SLACK_BYTES = 2 * MiB  # manifests, and a tree that grows between `prepare` and the lease


@dataclass(frozen=True)
class DeviceLimits:
    """The device tool's documented limits (/work/.library/device/README.md, 2026-12)."""

    call_bytes: int = 64 * MiB  # working tree + carried paths
    carry_paths: int = 8
    out_files: int = 8
    out_file_bytes: int = 16 * MiB
    out_total_bytes: int = 64 * MiB
    out_depth: int = 2  # $OUT/a/b/file comes back, $OUT/a/b/c/file does not
    call_s: int = 600
    idle_release_s: int = 30
    lease_s: int = 900  # device time for the whole session, machine start included
    min_start_left_s: int = 240  # no machine starts with less left


LIMITS = DeviceLimits()


@dataclass
class Call:
    index: int
    items: list[dict[str, Any]] = field(default_factory=list)  # {"engine", "file", "bytes"}

    @property
    def bytes(self) -> int:
        return sum(item["bytes"] for item in self.items)

    folder_root: Path = CALLS

    @property
    def folder(self) -> Path:
        return self.folder_root / f"{self.index:02d}"


def tree_files(repo: Path = ROOT) -> list[Path]:
    """What a device call copies: tracked files and untracked files that git does not ignore, plus shared/."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    files = {repo / name for name in listed if name and (repo / name).is_file()}
    shared = repo / "shared"
    if shared.is_dir():
        files |= {p for p in shared.rglob("*") if p.is_file()}
    return sorted(files)


def tree_bytes(repo: Path = ROOT) -> int:
    return sum(path.stat().st_size for path in tree_files(repo))


def part_budget(tree: int, limits: DeviceLimits = LIMITS) -> int:
    """Bytes of parts one call can carry beside the tree."""
    budget = limits.call_bytes - tree - SLACK_BYTES
    if budget < 8 * MiB:
        raise ValueError(
            f"the working tree is {tree / MiB:.1f} MiB: a call carries 64 MiB in all, so parts would be "
            f"under 8 MiB; shrink the tree (untracked files git does not ignore travel too)"
        )
    return budget


def carried_cache_bytes(carry: Path) -> int:
    """Bytes of a compile cache brought out of an earlier lease (tools/gpu/compile_cache.py), staged first."""
    manifest = carry / "compile-cache" / "manifest.json"
    return sum(p["bytes"] for p in read_manifest(manifest)["parts"]) if manifest.is_file() else 0


def fill_bytes(staged_before: int, part_bytes: int) -> int | None:
    """The first part of the next engine: what the previous engines' last call has left, if worth a part."""
    left = (part_bytes - staged_before % part_bytes) % part_bytes
    return left if left >= MiB else None


def carry_items(carry: Path, engines: tuple[str, ...] = STAGING_ORDER) -> list[dict[str, Any]]:
    """Every part prepare wrote, engine by engine in staging order; an engine without parts is left out."""
    items = []
    for engine in engines:
        manifest_path = carry / engine / "manifest.json"
        if not manifest_path.is_file():
            continue
        for part in read_manifest(manifest_path)["parts"]:
            items.append({"engine": engine, "file": part["file"], "bytes": part["bytes"]})
    return items


def plan_calls(items: list[dict[str, Any]], budget: int, calls_dir: Path = CALLS) -> list[Call]:
    """First fit in order: a call takes the next items while they fit, so engines finish staging in order."""
    calls: list[Call] = []
    for item in items:
        if item["bytes"] > budget:
            raise ValueError(
                f"{item['engine']}/{item['file']} is {item['bytes'] / MiB:.1f} MiB, over the "
                f"{budget / MiB:.1f} MiB a call can carry; run prepare again"
            )
        if not calls or calls[-1].bytes + item["bytes"] > budget:
            calls.append(Call(len(calls) + 1, folder_root=calls_dir))
        calls[-1].items.append(item)
    return calls


def write_call_folders(calls: list[Call], carry: Path, root: Path, calls_dir: Path = CALLS) -> None:
    """.gpu/calls/NN/<engine>/{part-*, manifest.json}: hard links, so nothing is copied twice."""
    shutil.rmtree(root / calls_dir, ignore_errors=True)
    for call in calls:
        for item in call.items:
            target = root / call.folder / item["engine"]
            target.mkdir(parents=True, exist_ok=True)
            for name in (item["file"], "manifest.json"):
                if not (target / name).exists():
                    _link_or_copy(carry / item["engine"] / name, target / name)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def call_bytes(call: Call, root: Path) -> int:
    """What the call carries, manifests included."""
    return sum(p.stat().st_size for p in (root / call.folder).rglob("*") if p.is_file())


def build(
    root: Path = ROOT, carry: Path | None = None, limits: DeviceLimits = LIMITS, calls_dir: Path = CALLS
) -> dict[str, Any]:
    """Measure the tree, plan the calls, write their folders, and check each against the limits."""
    carry = carry or root / ".gpu" / "carry"
    tree = tree_bytes(root)
    calls = plan_calls(carry_items(carry), part_budget(tree, limits), calls_dir)
    write_call_folders(calls, carry, root, calls_dir)
    rows = []
    for call in calls:
        carried = call_bytes(call, root)
        rows.append(
            {
                "call": call.index,
                "carry": str(call.folder),
                "parts": [f"{i['engine']}/{i['file']}" for i in call.items],
                "carry_bytes": carried,
                "tree_bytes": tree,
                "total_bytes": carried + tree,
                "fits": carried + tree <= limits.call_bytes,
            }
        )
    plan = {"tree_bytes": tree, "part_budget_bytes": part_budget(tree, limits), "calls": rows}
    (root / calls_dir).mkdir(parents=True, exist_ok=True)
    (root / calls_dir / "calls.json").write_text(json.dumps(plan, indent=1))
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.calls", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        plan = build()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tree {plan['tree_bytes'] / MiB:.1f} MiB; parts up to {plan['part_budget_bytes'] / MiB:.1f} MiB per call")
    for row in plan["calls"]:
        print(
            f"call {row['call']}: carry {row['carry']} ({', '.join(row['parts'])}) {row['carry_bytes'] / MiB:.1f} MiB "
            f"+ tree {row['tree_bytes'] / MiB:.1f} = {row['total_bytes'] / MiB:.1f} MiB "
            f"{'ok' if row['fits'] else 'OVER 64 MiB'}"
        )
    if not all(row["fits"] for row in plan["calls"]):
        print(
            "error: a call is over the 64 MiB a device call carries; run python3 -m tools.gpu.prepare again",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
