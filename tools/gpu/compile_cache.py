"""The engines' compile caches (vLLM's torch.compile artifacts, flashinfer's nvcc-built kernels) out of one lease
and into the next, within the device tool's limits.

Out: `poll --pack-cache` packs the campaign's compile-cache/ (xz -T0) and cuts it into parts of at most 15 MiB
under $OUT/compile-cache/ with a manifest, in what is left of the 8 files and 64 MiB after the results; a cache
that does not fit is not sent, and the state says why. In: copy that folder to `.gpu/carry/compile-cache/`;
`python3 -m tools.gpu.calls` then bins its parts into the lease's first calls like any engine's (they share a
call with wheel parts), `device stage --from` holds them, and the campaign unpacks them before any engine starts.

The caches are binaries built on the lent machine from the engines' code: they live in .gpu/ (ignored) and are
never committed, so they help a second lease of the same session only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tools.gpu.outbox import tar_xz_fast
from tools.gpu.pack import extract, join, read_manifest, sha256_file, split, write_manifest

NAME = "compile-cache"
PART_BYTES = 15 << 20  # under the 16 MiB a file coming back through $OUT may have


def pack(home: Path, out: Path, budget_bytes: int, budget_files: int) -> dict[str, Any]:
    """home/compile-cache -> out/compile-cache/{manifest.json, part-NNN}, or nothing, with the reason."""
    cache = home / NAME
    if not cache.is_dir() or not any(cache.rglob("*")):
        return {"packed": False, "why": "no compile cache written"}
    bundle = home / f"{NAME}.tar.xz"
    size = tar_xz_fast(cache, bundle)
    num_parts = -(-size // PART_BYTES)
    if size > budget_bytes or num_parts + 1 > budget_files:
        bundle.unlink()
        return {
            "packed": False,
            "why": f"{size / 2**20:.1f} MiB in {num_parts} part(s): over what $OUT has left "
            f"({budget_bytes / 2**20:.1f} MiB, {budget_files} file(s)) after the results",
        }
    target = out / NAME
    shutil.rmtree(target, ignore_errors=True)
    parts = split(bundle, target, PART_BYTES)
    write_manifest(
        target / "manifest.json",
        {
            "engine": NAME,
            "parts": parts,
            "bundle_sha256": sha256_file(bundle),
            "bundle_bytes": size,
            "imports": [],
            "env": {},
        },
    )
    bundle.unlink()
    return {"packed": True, "bytes": size, "parts": len(parts)}


def unpack_held(device_home: Path, home: Path) -> dict[str, Any] | bool:
    """A cache staged from the call folders (device_home/compile-cache/parts) into home/compile-cache."""
    held = device_home / NAME
    if not (held / "manifest.json").is_file():
        return False
    manifest = read_manifest(held / "manifest.json")
    bundle = held / "bundle.tar.xz"
    try:
        join(held / "parts", manifest, bundle)
    except (FileNotFoundError, ValueError) as exc:
        return {"unpacked": False, "why": str(exc)}
    files = extract(bundle, home / NAME)
    bundle.unlink()
    return {"unpacked": True, "files": files, "bytes": manifest["bundle_bytes"]}
