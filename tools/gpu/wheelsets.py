"""The pinned wheel sets (tools/gpu/wheelsets.json) and their resolution into one list per engine.

Each engine's set is `common` + its own wheels, one version per distribution, none of them a package
the lent image already has (torch, triton, transformers, ... would be shadowed by a second copy), and
each pinned by file name and sha256, so `prepare` downloads exactly these bytes or stops.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.gpu.stage import DropRule

LOCK = Path(__file__).with_name("wheelsets.json")
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
    "manylinux_2_26_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    file: str
    sha256: str
    bytes: int

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class WheelSet:
    engine: str
    wheels: tuple[Wheel, ...]
    drops: tuple[DropRule, ...]
    imports: tuple[str, ...]  # checked on the device after install
    env: dict[str, str]  # set on the device for this engine

    @property
    def download_bytes(self) -> int:
        return sum(w.bytes for w in self.wheels)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_lock(path: Path = LOCK) -> dict[str, Any]:
    return json.loads(path.read_text())


def resolve(lock: dict[str, Any], engine: str) -> WheelSet:
    """`common` + the engine's own entries; two versions of one distribution, or a package the
    device image already has, is an error that names it."""
    if engine not in lock["sets"]:
        raise KeyError(f"no wheel set {engine!r}; known: {', '.join(sorted(lock['sets']))}")
    spec = lock["sets"][engine]
    entries = [*lock.get("common", {}).get("wheels", []), *spec["wheels"]]
    chosen: dict[str, Wheel] = {}
    on_image = {canonical(n) for n in lock["device_image"]["packages"]}
    for entry in entries:
        wheel = Wheel(entry["name"], entry["version"], entry["file"], entry["sha256"], int(entry["bytes"]))
        key = canonical(wheel.name)
        if key in on_image and not entry.get("replaces_image"):
            raise ValueError(
                f"{wheel.name} is already on the device image; carrying a second copy would shadow it "
                "(give `replaces_image` with the reason when that is the point)"
            )
        if key in chosen and chosen[key].version != wheel.version:
            raise ValueError(f"two versions of {wheel.name}: {chosen[key].version} and {wheel.version}")
        if not wheel.file.endswith(".whl") or canonical(wheel.file.split("-")[0]) != key:
            raise ValueError(f"{wheel.file} is not a wheel of {wheel.name}")
        chosen[key] = wheel
    drops = [*lock.get("common", {}).get("drop", []), *spec.get("drop", [])]
    return WheelSet(
        engine=engine,
        wheels=tuple(sorted(chosen.values(), key=lambda w: canonical(w.name))),
        drops=tuple(DropRule(d["pattern"], d["reason"]) for d in drops),
        imports=tuple(spec["imports"]),
        env=dict(spec.get("env", {})),
    )


def download_argv(python: str, wheel: Wheel, dest: Path, python_version: str = "3.12") -> list[str]:
    """pip download of exactly one pinned wheel for the device (cp312, manylinux x86-64, no deps)."""
    argv = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
        "--quiet",
    ]
    for platform in wheel_platforms(wheel.file) or PLATFORMS:
        argv += ["--platform", platform]
    return [*argv, wheel.requirement]


def wheel_platforms(file: str) -> tuple[str, ...]:
    """The locked file's own platform tags: an index that also offers another build of the same version
    (say manylinux2014 beside manylinux_2_28) then still yields the locked file, not pip's first pick."""
    platforms = tuple(file.removesuffix(".whl").split("-")[-1].split("."))
    return () if platforms == ("any",) else platforms
