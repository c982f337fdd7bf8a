"""What a device call hands back through $OUT, within the tool's limits: at most 8 files, 16 MiB each, 64 MiB in
all, no deeper than $OUT/a/b/file, names of letters, digits, '.', '_' and '-'. A file past a limit does not
come back at all, so everything here is sized before it is written.

Results are packed as one .tar.xz (xz -T0 where the binary exists: the device has 16 cores), cut into 16 MiB
pieces when larger. When the pack would not fit the budget, the largest profiler traces are left out, one at a
time, and named in `left_out`; the results files and logs always travel.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tools.gpu.calls import LIMITS, DeviceLimits
from tools.gpu.pack import split, write_tar_xz

NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PROFILE_DIR = "profiles"


def tar_xz_fast(tree: Path, out: Path, exclude: set[str] = frozenset()) -> int:
    """tree -> out (.tar.xz): `tar | xz -T0 -3` where xz exists, else Python's lzma; returns the bytes written."""
    if shutil.which("xz") is None:
        write_tar_xz(tree, out, preset=3, exclude=exclude)
        return out.stat().st_size
    with out.open("wb") as sink:
        xz = subprocess.Popen(["xz", "-T0", "-3", "-c"], stdin=subprocess.PIPE, stdout=sink)
        with tarfile.open(fileobj=xz.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(tree.rglob("*")):
                relative = path.relative_to(tree).as_posix()
                if relative in exclude or path.is_symlink():
                    continue
                tar.add(path, arcname=relative, recursive=False)
        xz.stdin.close()
        if xz.wait() != 0:
            raise RuntimeError("xz failed")
    return out.stat().st_size


def pack_results(
    results: Path, out: Path, name: str, budget_bytes: int, budget_files: int, limits: DeviceLimits = LIMITS
) -> dict[str, Any]:
    """results/ into out as `<name>.tar.xz`, or `<name>/part-NNN` of 16 MiB; profiler traces left out largest first
    while it does not fit `budget_bytes` and `budget_files`."""
    out.mkdir(parents=True, exist_ok=True)
    traces = sorted(
        (p for p in results.rglob("*") if p.is_file() and PROFILE_DIR in p.relative_to(results).parts),
        key=lambda p: p.stat().st_size,
        reverse=True,
    )
    left_out: list[str] = []
    bundle = out / f"{name}.tar.xz"
    while True:
        size = tar_xz_fast(results, bundle, set(left_out))
        files = -(-size // limits.out_file_bytes)
        if (size <= budget_bytes and files <= budget_files) or len(left_out) == len(traces):
            break
        left_out.append(traces[len(left_out)].relative_to(results).as_posix())
    if size > limits.out_file_bytes:
        parts = split(bundle, out / name, limits.out_file_bytes)
        bundle.unlink()
        written = [f"{name}/{p['file']}" for p in parts]
    else:
        written = [bundle.name]
    return {
        "files": written,
        "bytes": size,
        "left_out": left_out,
        "fits": size <= budget_bytes and len(written) <= budget_files,
    }


def check(out: Path, limits: DeviceLimits = LIMITS) -> list[str]:
    """What in `out` would not come back; [] when everything will."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = []
    if len(files) > limits.out_files:
        problems.append(f"{len(files)} files, over {limits.out_files}")
    total = sum(p.stat().st_size for p in files)
    if total > limits.out_total_bytes:
        problems.append(f"{total / 2**20:.1f} MiB in all, over {limits.out_total_bytes >> 20} MiB")
    for path in files:
        relative = path.relative_to(out)
        if path.stat().st_size > limits.out_file_bytes:
            problems.append(
                f"{relative}: {path.stat().st_size / 2**20:.1f} MiB, over {limits.out_file_bytes >> 20} MiB"
            )
        if len(relative.parts) - 1 > limits.out_depth:
            problems.append(f"{relative}: deeper than {limits.out_depth} folders")
        if not all(NAME.match(part) for part in relative.parts):
            problems.append(f"{relative}: a name with characters the tool refuses")
    return problems


def room_left(out: Path, limits: DeviceLimits = LIMITS) -> tuple[int, int]:
    """(bytes, files) that $OUT can still take beside what is in it."""
    files = [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else []
    return limits.out_total_bytes - sum(p.stat().st_size for p in files), limits.out_files - len(files)
