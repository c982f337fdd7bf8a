"""Timing bounds that say how close they came. A test whose assertion depends on wall time or a CPU share asserts it
through `below`, `above` or `near`, naming the true value it expects (the known answer). Each call asserts as a
plain `assert` would and, with ENGINEBENCH_TEST_MARGINS=PATH set, appends one JSON line to PATH.<worker>: the test,
the check, the measured value, the bound, the true value and the headroom left.

headroom = how much of the room between the true value and the bound was left: 1 at the true value, 0 at the bound,
below 0 a failure. `python -m tests.bounds PATH...` gives each check's worst headroom over every run written there
(docs/testing.md: how the suite's bounds were measured, and what each one catches).
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path


def below(value: float, bound: float, true: float, what: str) -> None:
    """value < bound, where a correct harness on an idle host gives `true` (< bound); noise pushes it up."""
    _check(value < bound, value, bound, true, (bound - value) / (bound - true), what, "<")


def above(value: float, bound: float, true: float, what: str) -> None:
    """value > bound, where a correct harness on an idle host gives `true` (> bound); noise pushes it down."""
    _check(value > bound, value, bound, true, (value - bound) / (true - bound), what, ">")


def near(value: float, true: float, tolerance: float, what: str) -> None:
    """|value - true| <= tolerance."""
    _check(abs(value - true) <= tolerance, value, tolerance, true, 1 - abs(value - true) / tolerance, what, "±")


def _check(ok: bool, value: float, bound: float, true: float, headroom: float, what: str, kind: str) -> None:
    path = os.environ.get("ENGINEBENCH_TEST_MARGINS")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        row = {
            "test": test,
            "check": what,
            "kind": kind,
            "value": value,
            "bound": bound,
            "true": true,
            "headroom": headroom,
        }
        with open(f"{path}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "a") as out:
            out.write(json.dumps(row) + "\n")
    relation = f"within ±{bound:g} of" if kind == "±" else f"{kind} {bound:g}, true"
    assert ok, f"{what}: {value:g} ({relation} {true:g}; headroom {headroom:.2f})"


def worst(paths: list[str]) -> dict[tuple[str, str], dict]:
    """Per (test, check): the row with the least headroom, and how many runs wrote one."""
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            row = json.loads(line)
            rows[row["test"], row["check"]].append(row)
    return {key: {**min(found, key=lambda r: r["headroom"]), "runs": len(found)} for key, found in sorted(rows.items())}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tests.bounds MARGINS_FILE...  (written with ENGINEBENCH_TEST_MARGINS=PATH)")
    print("| test | check | true | bound | worst value | worst headroom | runs |\n|---|---|---|---|---|---|---|")
    for (test, check), row in worst(sys.argv[1:]).items():
        bound = f"±{row['bound']:g}" if row["kind"] == "±" else f"{row['kind']} {row['bound']:g}"
        print(
            f"| {test} | {check} | {row['true']:g} | {bound} | {row['value']:.4g} | {row['headroom']:.2f} | "
            f"{row['runs']} |"
        )
