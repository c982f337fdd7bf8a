"""What one `python -m compare` run is asked to do, as a frozen value: the CLI builds it from argv, the
anchor and the tests build it directly, and orchestration only ever sees this."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.analysis.precision import parse_rule
from engines import REGISTRY
from engines.base import UsageError, scoped_args
from workloads.models import DEFAULT_MODEL
from workloads.scenario_files import apply_overrides, builtin_names, load_scenario
from workloads.scenarios import Scenario

MODES = ("inprocess", "http", "both")
DEFAULT_DEADLINE_S = 7200.0


@dataclass(frozen=True)
class RunConfig:
    engines: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    model: str = DEFAULT_MODEL
    tokenizer: str | None = None  # build prompts with this model's tokenizer (required for ollama:<tag>)
    out_dir: Path = Path("results")
    engine_args: tuple[str, ...] = ()  # K=V or ENGINE.K=V, as given
    request_args: tuple[str, ...] = ()  # K=V or ENGINE.K=V, as given: request features (engines/request_args.py)
    mode: str = "inprocess"
    quick: bool = False
    cache_dir: Path | None = None
    show_progress: bool = True
    verbose: bool = False  # engine output live on the terminal, not in <out>/logs/<engines>-engine.log
    slo: dict[str, float] | None = None  # latency limits for goodput
    profile: str | None = None  # cell id under the engine's profiler; "": each scenario's first cell
    host_profile: str | None = (
        None  # cell id, or "all": py-spy on every serving process (compare/run/instruments/hostprofile.py)
    )
    host_profile_rate: int = 100  # py-spy samples per second and thread
    profile_kind: str = (
        "torch"  # the engine's profiler window: "torch" traces, or "cuda" (cudaProfilerStart/Stop, --nsys)
    )
    find_max_rate: int = 0  # > 0: search the highest request rate that meets the SLO, in at most this many steps
    sweeps: tuple[str, ...] = ()  # KEY=V1,V2 or ENGINE.KEY=V1,V2: the grid of engine args (compare/run/points/sweep.py)
    ablation: str | None = None  # a named set of points (compare/run/points/ablations.py)
    isolate: bool | None = None  # each point in its own child process; None: on for sweeps and GPU engines
    resume: Path | None = None  # skip runs complete in this folder, continue partial ones
    deadline_s: float | None = DEFAULT_DEADLINE_S  # an isolated point still running after this is killed
    allow_failures: bool = False  # exit 0 even when requests failed
    client_procs: int = 1  # HTTP mode: client worker processes (compare/run/clients/clientprocs.py)
    ray: str | None = None  # HTTP mode: place the client workers as Ray actors: "auto" or HOST:PORT of a Ray head
    repeat_baseline: bool = False  # a sweep runs its baseline again last: the A/A row is the between-run noise
    child_args: tuple[str, ...] = ()  # argv an isolated point's child repeats (the parent-only options removed)
    start_barrier: Path | None = None  # once started, wait here for this engine's turn (compare/run/points/together.py)
    start_together: bool = False  # every engine in its own child, started at once, released one at a time


def load_scenarios(
    names: list[str], quick: bool, overrides: dict[str, Any], distinct_prompts: bool = False
) -> tuple[Scenario, ...]:
    """Built-in names, 'all' or JSON files; `--quick` first, then the overrides (None: not given)."""
    if "all" in names:
        names = [n for n in builtin_names() if n != "smoke"]
    scenarios = []
    for name in names:
        scenario = apply_overrides(load_scenario(name), quick, overrides)
        if distinct_prompts and scenario.prompt_mode == "same":
            scenario = dataclasses.replace(scenario, prompt_mode="distinct")
        if scenario.until_ci:
            parse_rule(scenario.until_ci)  # exit 2 before any engine starts
        scenarios.append(scenario)
    return tuple(scenarios)


def request_args_for(engine: str, pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The request args that apply to `engine`, typed and checked against the keys its class passes (exit 2 else),
    under the engine's own names. `engine` is a registry name or `http` (the HTTP twin of any)."""
    from engines import load_engine_class
    from engines.request_args import engine_request_args, typed_request_args

    given = scoped_args(pairs, engine, REGISTRY, "--request-arg")  # `http` is a registry name too
    if not given:
        return {}
    engine_class = http_engine_class() if engine == "http" else load_engine_class(engine)
    typed = typed_request_args(engine, given, engine_class.request_keys)
    passed = engine_request_args(engine_class, typed, engine)
    if passed:
        engine_class.check_request_args(passed)
    return passed


def check_constraints(engine: str, scenarios) -> None:
    """Constrained cells (structured output) run only on engines that take their kind of constraint (exit 2 else)."""
    from engines import load_engine_class

    kinds = {s.structured_kind for s in scenarios if any(mode != "none" for mode in s.structured)}
    if not kinds:
        return
    engine_class = http_engine_class() if engine == "http" else load_engine_class(engine)
    takes = engine_class.constraint_kinds
    missing = sorted(kinds - set(takes))
    if missing:
        raise UsageError(
            f"engine {engine!r} takes no {missing[0]} constraints (structured output)"
            f"{'; it takes ' + ', '.join(takes) if takes else ''}; vllm and sglang take json, regex and "
            "choice, llamacpp json and choice"
        )


def check_lora(engine: str, scenarios) -> None:
    """Scenarios with LoRA adapters run only on engines that serve them (exit 2 else), before anything is built."""
    from engines import load_engine_class

    if not any(s.lora_adapters for s in scenarios):
        return
    engine_class = http_engine_class() if engine == "http" else load_engine_class(engine)
    if not engine_class.serves_lora:
        raise UsageError(
            f"engine {engine!r} serves no LoRA adapters here; multi-LoRA runs on vllm (in-process), sglang, "
            "their HTTP servers, and null (a fake); drop lora_adapters"
        )


def http_engine_class():
    from engines.http_openai import HttpCompletionsEngine

    return HttpCompletionsEngine


def engine_args_for(engine: str, pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The K=V pairs that apply to `engine`: unscoped ones, and ENGINE.K=V for this engine."""
    return scoped_args(pairs, engine, REGISTRY, "--engine-arg")
