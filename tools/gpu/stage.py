"""Staging: wheels unpacked into one site-packages tree with no dependencies resolved (the lent machine
already has torch and friends), then the files our runs do not need are dropped, each rule with its reason.

A wheel is a zip: its files go under the target as they are, except `<dist>.data/purelib|platlib/*`,
which go to the root, and `.data/scripts` (console scripts: not needed, we run modules), headers and
data, which are left out. This is what `pip install --no-deps --target` does for these wheels, made
deterministic and testable without pip or a network.
"""

from __future__ import annotations

import fnmatch
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any


@dataclass(frozen=True)
class DropRule:
    pattern: str  # fnmatch over paths relative to site-packages, '/' separated; '*' crosses '/'
    reason: str


def install_wheel(wheel: Path, target: Path) -> int:
    """Unpack one wheel into `target`; returns the number of files written."""
    written = 0
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            destination = _destination(PurePosixPath(info.filename))
            if destination is None:
                continue
            path = target / destination
            if target.resolve() not in path.resolve().parents:
                raise ValueError(f"{wheel.name}: {info.filename} escapes the target")
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, path.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            if (info.external_attr >> 16) & 0o111:
                path.chmod(0o755)
            written += 1
    return written


def _destination(name: PurePosixPath) -> PurePosixPath | None:
    top = name.parts[0]
    if not top.endswith(".data"):
        return name
    if len(name.parts) > 2 and name.parts[1] in ("purelib", "platlib"):
        return PurePosixPath(*name.parts[2:])
    return None  # scripts, headers, data


def matching(target: Path, rule: DropRule) -> list[Path]:
    return sorted(
        p for p in target.rglob("*") if p.is_file() and fnmatch.fnmatch(p.relative_to(target).as_posix(), rule.pattern)
    )


def apply_drops(target: Path, rules: list[DropRule]) -> list[dict[str, Any]]:
    """Delete what each rule matches; returns per rule: files, bytes and reason. A rule matching nothing
    is reported too (a wheel update can make a rule stale). Whether the imports still work after the
    drops is checked on the device by `install`."""
    report = []
    for rule in rules:
        files = matching(target, rule)
        size = sum(f.stat().st_size for f in files)
        for f in files:
            f.unlink()
        report.append({"pattern": rule.pattern, "reason": rule.reason, "files": len(files), "bytes": size})
    _remove_empty_dirs(target)
    return report


def _remove_empty_dirs(target: Path) -> None:
    for directory in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def tree_bytes(target: Path) -> int:
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
