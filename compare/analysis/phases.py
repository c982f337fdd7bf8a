"""Which phase of an engine a sampled stack is in, and the shares per thread and process.

The rules are data (phases.json): [phase, pattern] matched against 'path:function' of each frame, from the
leaf frame up; the first frame any rule matches decides, engine rules before common ones. A stack that no
rule matches is `other`, and its leaf functions are listed so that the table can grow.

Shares are of a thread's samples. py-spy samples every thread at the rate, idle or not (`--idle`), so a
thread's share is a share of wall time. The sampling error is the binomial 95% interval, 1.96 sqrt(p(1-p)/n):
a floor, since successive samples are correlated.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from fnmatch import translate
from pathlib import Path
from typing import Any

TABLE_FILE = Path(__file__).with_name("phases.json")
REPO = str(Path(__file__).resolve().parents[2]) + "/"
_STDLIB = re.compile(r".*/lib/python3\.\d+/(?!site-packages/|dist-packages/)")
TOP_FUNCTIONS = 12


@functools.cache
def table() -> dict[str, Any]:
    return json.loads(TABLE_FILE.read_text())


def phase_names() -> list[str]:
    return list(table()["phases"])


def rules(extra: list[list[str]] | tuple = ()) -> list[tuple[str, re.Pattern]]:
    """The engine's own rules first (a plug-in engine brings them), then every engine's table, then common."""
    data = table()
    pairs = [*extra, *(rule for family in data["engines"].values() for rule in family), *data["common"]]
    return [(phase, _compiled(pattern)) for phase, pattern in pairs]


def _compiled(pattern: str) -> re.Pattern:
    """'path:name' also matches a method of that name: py-spy gives qualified names ('Condition.wait')."""
    path, _, name = pattern.rpartition(":")
    method = f"{path}:*.{name}" if path and not name.startswith("*") else None
    return re.compile(translate(pattern) + (f"|{translate(method)}" if method else ""))


def frame_key(file: str, function: str) -> str:
    """'path:function', the path relative to site-packages, the standard library or this repository."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return f"{file.rsplit(marker, 1)[1]}:{function}"
    if file.startswith(REPO):
        return f"{file[len(REPO) :]}:{function}"
    return f"{_STDLIB.sub('', file)}:{function}"


class Classifier:
    """Phase per stack, cached per frame and per stack (a profile repeats few distinct stacks)."""

    def __init__(self, frames: list[dict[str, Any]], rule_list: list[tuple[str, re.Pattern]]):
        self.keys = [frame_key(f.get("file") or "", f.get("name") or "?") for f in frames]
        self.rules = rule_list
        self._frame_phase: dict[int, str | None] = {}
        self._stack_phase: dict[tuple[int, ...], str] = {}

    def frame_phase(self, index: int) -> str | None:
        if index not in self._frame_phase:
            key = self.keys[index]
            self._frame_phase[index] = next((phase for phase, pattern in self.rules if pattern.match(key)), None)
        return self._frame_phase[index]

    def stack_phase(self, stack: tuple[int, ...]) -> str:
        """`stack` root first, as speedscope stores it."""
        if stack not in self._stack_phase:
            found = (self.frame_phase(index) for index in reversed(stack))
            self._stack_phase[stack] = next((phase for phase in found if phase is not None), "other")
        return self._stack_phase[stack]


def share(count: int, total: int) -> dict[str, float]:
    p = count / total if total else 0.0
    return {"share": p, "ci95": 1.96 * math.sqrt(p * (1 - p) / total) if total else 0.0}


def thread_summary(stacks: list[tuple[int, ...]], classifier: Classifier) -> dict[str, Any]:
    """Phase shares, top functions by self and by total share, and the leaves no rule claimed."""
    n = len(stacks)
    phases = Counter(classifier.stack_phase(s) for s in stacks)
    leaves = Counter(s[-1] for s in stacks if s)
    totals = Counter(index for s in stacks for index in set(s))
    unclaimed = Counter(s[-1] for s in stacks if s and classifier.stack_phase(s) == "other")
    keys = classifier.keys

    def top(counter: Counter, k: int = TOP_FUNCTIONS) -> list[dict[str, Any]]:
        return [{"function": keys[index], "share": count / n} for index, count in counter.most_common(k)]

    return {
        "samples": n,
        "phases": {name: share(phases.get(name, 0), n) for name in phase_names()},
        "busy_share": 1 - phases.get("waiting", 0) / n if n else 0.0,
        "top_self": top(leaves),
        "top_total": top(totals),
        "other_leaves": top(unclaimed, 5),
    }


def profile_summary(
    speedscope: dict[str, Any],
    rule_list: list[tuple[str, re.Pattern]],
    thread_cpu_share: dict[int, float] | None = None,
) -> dict[str, Any]:
    """One process's py-spy speedscope file: every thread summarized; the headline is the thread that used the
    most CPU over the window (/proc, by thread id), or without those figures the one with the most busy samples.
    (A thread asleep in C, in time.sleep or os.waitpid, shows its Python caller: its samples look busy.)"""
    classifier = Classifier(speedscope["shared"]["frames"], rule_list)
    cpu = thread_cpu_share or {}
    threads = []
    for profile in speedscope["profiles"]:
        name = profile.get("name", "?")
        summary = thread_summary([tuple(s) for s in profile["samples"]], classifier)
        tid = re.match(r"Thread (\d+)", name)
        threads.append({"thread": name, "cpu_share": cpu.get(int(tid.group(1))) if tid else None, **summary})
    if not threads:
        return {"main_thread": None, "samples": 0, "other_threads": []}
    if any(t["cpu_share"] is not None for t in threads):
        main = max(threads, key=lambda t: (t["cpu_share"] or 0.0, "MainThread" in t["thread"]))
    else:
        main = max(threads, key=lambda t: t["busy_share"] * t["samples"])
    others = [
        {"thread": t["thread"], "samples": t["samples"], "busy_share": t["busy_share"], "cpu_share": t["cpu_share"]}
        for t in threads
        if t is not main
    ]
    name = main.pop("thread")
    return {"main_thread": name, **main, "other_threads": others}


def host_profile_warnings(profile: dict[str, Any]) -> list[str]:
    """A sampler that fell behind, cost too much, or could not attach: said with the cell's figures."""
    if not profile:
        return []
    cost = sum(p.get("sampler_cpu_share") or 0 for p in profile.get("processes", []))
    warnings = [
        f"host profile: py-spy sampled {len(profile.get('processes', []))} process(es) during this cell, using "
        f"{cost:.0%} of a core in all; its numbers carry that cost"
    ]
    for process in profile.get("processes", []):
        name = f"{process['role']} (pid {process['pid']})"
        if process.get("error"):
            warnings.append(f"host profile: {name} not sampled: {process['error']}")
            continue
        kept = process.get("sampler_kept_up")
        if kept is not None and kept < 0.9:
            warnings.append(
                f"host profile: py-spy kept {kept:.0%} of the samples it was asked for on {name}; "
                "lower --host-profile-rate"
            )
        cost = process.get("sampler_cpu_share")
        if cost is not None and cost > 0.05:
            warnings.append(
                f"host profile: py-spy used {cost:.0%} of a core sampling {name}; on a machine with few "
                "cores it competes with the engine"
            )
    return warnings
