"""A run's points: one per engine and combination of `--sweep KEY=V1,V2` values, or a named `--ablation` set's.

A point is one engine run: an engine, a mode, and the engine args and request args (`request.K=V`,
docs/features.md) it adds to the run's own. The first point of a grid (every key at its first value) is the
baseline the ablation table compares the others with. compare/run/points/sweep.py runs them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from compare.run.points.ablations import ABLATIONS
from engines import REGISTRY
from engines.base import UsageError


@dataclass(frozen=True)
class Point:
    label: str  # "baseline", "enable_prefix_caching=false", "vllm-batch"
    engine: str
    engine_args: tuple[str, ...] = ()  # K=V pairs added after the run's own --engine-arg (so they win)
    mode: str = "inprocess"
    request_args: tuple[str, ...] = ()  # ENGINE.K=V request features (--sweep request.K=...), after the run's own

    @property
    def run_name(self) -> str:
        """The name its results file carries: `X-http` for HTTP mode, as a plain run names it."""
        return f"{self.engine}-http" if self.mode == "http" else self.engine

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.engine}-{self.mode}-{self.label}")[:120]

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "engine": self.engine,
            "engine_args": list(self.engine_args),
            "mode": self.mode,
            **({"request_args": list(self.request_args)} if self.request_args else {}),
        }


REQUEST_PREFIX = "request."  # --sweep request.temperature=0,0.8: a request feature, not an engine arg


def parse_sweep(text: str) -> tuple[str | None, str, tuple[str, ...]]:
    """`KEY=V1,V2` or `ENGINE.KEY=V1,V2` as (engine or None, key, values)."""
    key, sep, values = text.partition("=")
    parsed = tuple(v.strip() for v in values.split(",") if v.strip())
    if not sep or not key or not parsed:
        raise UsageError(f"--sweep {text!r} must look like key=v1,v2 (or engine.key=v1,v2)")
    scope, dot, name = key.partition(".")
    if dot and scope in REGISTRY:
        return scope, name, parsed
    return None, key, parsed


def grid(engines: tuple[str, ...], sweeps: tuple[str, ...], mode: str) -> list[Point]:
    """One point per engine and combination of values; keys scoped to another engine are left out."""
    parsed = [parse_sweep(s) for s in sweeps]
    points = []
    for engine in engines:
        axes = [(key, values) for scope, key, values in parsed if scope in (None, engine)]
        for combo in itertools.product(*(values for _, values in axes)):
            pairs = tuple(f"{key}={value}" for (key, _), value in zip(axes, combo))
            label = ",".join(pairs) if pairs else "baseline"
            engine_pairs, request_pairs = scoped_pairs(engine, pairs)
            points.append(Point(label, engine, engine_pairs, mode, request_pairs))
    return points


def ablation_points(name: str, engines: tuple[str, ...] | None) -> tuple[list[Point], str]:
    """A named set's points (baseline first) and the question it answers."""
    if name not in ABLATIONS:
        raise UsageError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)} (python -m compare --list)")
    ablation = ABLATIONS[name]
    if engines and set(engines) - set(ablation.engines):
        raise UsageError(
            f"ablation {name!r} runs {', '.join(ablation.engines)}; drop --engine "
            f"{' '.join(sorted(set(engines) - set(ablation.engines)))} or pick another set"
        )
    points = []
    for label, engine, pairs, mode in ablation.points:
        engine_pairs, request_pairs = scoped_pairs(engine, pairs)
        points.append(Point(label, engine, engine_pairs, mode, request_pairs))
    return points, ablation.question


def scoped_pairs(engine: str, pairs: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """K=V pairs scoped to `engine`, split into engine args and request args (`request.K=V`)."""
    engine_pairs = tuple(f"{engine}.{p}" for p in pairs if not p.startswith(REQUEST_PREFIX))
    request_pairs = tuple(f"{engine}.{p[len(REQUEST_PREFIX) :]}" for p in pairs if p.startswith(REQUEST_PREFIX))
    return engine_pairs, request_pairs


def points_for(
    engines: tuple[str, ...], sweeps: tuple[str, ...], ablation: str | None, mode: str
) -> tuple[list[Point], str]:
    """The run's points and the question they answer; a plain run is one baseline point per engine."""
    if ablation and sweeps:
        raise UsageError("give --ablation NAME or --sweep KEY=V1,V2, not both")
    if ablation:
        return ablation_points(ablation, engines)
    modes = ("inprocess", "http") if mode == "both" else (mode,)
    points = [p for m in modes for p in grid(engines, sweeps, m)]
    question = (
        "how do " + ", ".join(parse_sweep(s)[1] for s in sweeps) + " change latency and throughput?" if sweeps else ""
    )
    return points, question
