"""The GPU campaign's plan: what runs on a lease, in order of value, which engines start together, and the
timeline that says, from measured times, whether the required steps fit a 900 s lease with 90 s to spare.

Units run in order. A unit is one step, or a group of steps whose engines start at once on the one big GPU
and are then measured one at a time (compare/run/points/together.py): each waits at a start barrier, and the campaign
releases the next only when the previous has exited. On the H200 (143 GB) two 8B engines fit with equal,
explicit KV budgets (TOGETHER_ARGS), so the lease pays the longest start once instead of every start in turn.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.gpu.validate import ENGINE_ARGS, MODEL, Step

KIT = Path("tools/gpu")
INPROCESS_SCENARIOS = (
    str(KIT / "concurrent-gpu.json"),
    "prefix-cache",
    "long-context",
    "single",
    str(KIT / "korean-gpu.json"),
)
TRAFFIC_SCENARIOS = (str(KIT / "shared-prefix-gpu.json"), "multi-turn")
PROFILED_SCENARIO, PROFILED_CELL = "smoke", "c1-in32"  # SGLang's profiler window: one short cell, run first
ABLATION_SETS = {"vllm": ("vllm-cuda-graphs", "vllm-async-scheduling"), "sglang": ("sglang-radix", "sglang-overlap")}
# No start cuts that change what is measured: vLLM's CUDA-graph sizes capped at 64 made every mixed step with a
# 128-token question run eager (v1/cudagraph_dispatcher.py) while SGLang's prefill graphs covered it (it saved
# ~2 s); SGLang's skip_server_warmup does nothing in-process. SGLang logs at info for its start phases.
START_ARGS = {"sglang": ("sglang.log_level=info",)}
HTTP_ONLY_ARGS = {
    "sglang": ("sglang.skip_server_warmup=true",)
}  # the server's warmup request; the harness warms up itself
# Engines started together get equal, explicit KV budgets, so neither's pool depends on when the other allocated:
# 32 GiB each = 262,144 tokens of Llama-3.1-8B (128 KiB per token). vLLM: kv_cache_memory_bytes skips its memory
# profiling (v1/worker/gpu_worker.py), and gpu_memory_utilization only gates the free memory at its start
# (v1/worker/utils.py request_memory). SGLang: max_total_tokens caps the pool, and mem_fraction_static 0.85 leaves
# the pool >= the cap even when vLLM already holds its share (mem_cache/kv_cache_configurator.py).
KV_BUDGET_BYTES = 32 << 30
KV_BYTES_PER_TOKEN = 128 << 10  # Llama-3.1-8B bf16: 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes
TOGETHER_ARGS = {
    "vllm": (f"vllm.kv_cache_memory_bytes={KV_BUDGET_BYTES}", "vllm.gpu_memory_utilization=0.45"),
    "sglang": (f"sglang.max_total_tokens={KV_BUDGET_BYTES // KV_BYTES_PER_TOKEN}", "sglang.mem_fraction_static=0.85"),
}
# compile caches in the campaign's home: a second start of an engine in the same lease loads what the first one
# compiled; FLASHINFER_WORKSPACE_BASE holds the FA2 kernels flashinfer builds with nvcc on SGLang's first prefill
# (~175 s of its 260 s start on 2026-11-23; flashinfer-python ships no AOT kernels). Both engines overwrite
# TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR themselves, so only these two are set.
COMPILE_CACHE_ENV = {"VLLM_CACHE_ROOT": "vllm", "FLASHINFER_WORKSPACE_BASE": "flashinfer"}


@dataclass(frozen=True)
class Measured:
    """Seconds measured on the lent machines (source in `where`), the plan's inputs."""

    machine_start_s: int = 40  # 2026-11-23: first call 37 s
    staging_call_s: int = 10  # a warm call carrying ~60 MiB: 7-9 s
    operator_gap_s: int = 15  # between a reply and the next call (the session's own latency)
    install_s: int = 60  # 2026-11-23: vLLM 86 s with five serial import checks (now in parallel), SGLang 93 s
    final_pack_s: int = 40  # the last poll: pack, $OUT back
    where: str = "results/gpu/2026-11-23-nvidia-h100-x1 (campaign-state.json) and tools/gpu/README.md"


MEASURED = Measured()
# seconds to a ready engine on the 8B model, measured 2026-11-23 on the H100 (vLLM 183 s with torch.compile and CUDA
# graphs; SGLang 260 s, 175 s of it flashinfer's nvcc builds); a second start in one lease reuses the caches
ENGINE_START_S = {"vllm": 185, "sglang": 265}
WARM_START_S = {"vllm": 120, "sglang": 100}
OTHER_START_S = 10  # an engine without a measured start (the null engine in tests)
TOGETHER_SLOWDOWN = 1.1  # two engines compiling at once on 16 cores
# runs once the engine is up, estimated from the 2026-11-23 throughput (c=16 2.2k, c=64 7.7k output tok/s):
# shared-prefix 256 x 256 tokens at c=16 and c=64 (~45 s with prefills, warmups, cache resets), multi-turn
# 32 x 6 turns of 128 tokens, 8 active, 0.5 s think time (~40 s)
TRAFFIC_RUN_S = 100
PROFILED_RUN_S = 30  # smoke with one profiler window; the trace is written at its end
INPROCESS_RUN_S = 450  # the five in-process scenarios, 2026-11-23: vLLM 430 s, SGLang 450 s
HTTP_RUN_S = 110
ABLATION_POINT_RUN_S = 60
# wave 5, first among the optional units (#49): speculative decoding on vLLM, n-gram at K = 2, 4, 8 and the model
# drafting for itself (--ablation spec-decode: five points, one warm start each), on the speculative scenario at c=16
SPEC_SET, SPEC_SCENARIO = "spec-decode", "speculative"
SPEC_POINTS = 5
# and before it, the step-cost surface on vLLM: batch-shapes --quick (B = 1, 4, 16 x C = 128, 512, 2048), one warm start
STEPS_SCENARIO, STEPS_RUN_S = "batch-shapes", 60
SERVER_ENGINES = ("vllm", "sglang")  # engines with an HTTP server and ablation sets
LEASE_MARGIN_S = 90  # the required steps end at least this long before the lease does


@dataclass(frozen=True)
class CampaignStep:
    engine: str
    step: Step
    cap_s: int  # at most this long (a group member: from its release), even when the deadline is further away
    group: str = ""  # steps of one group start together and are measured in turn ("": on its own)
    run_s: int = 0  # the estimate's measuring part (estimate_s = start + run_s for a step on its own)
    barrier: Path | None = None  # a group member's start barrier (compare/run/points/together.py)
    label: str = ""  # the name its engine arrives at the barrier with: the run's name, X or X-http

    @property
    def start_s(self) -> int:
        return self.step.estimate_s - self.run_s


def start_estimate(engine: str, warm: bool = False) -> int:
    return (WARM_START_S if warm else ENGINE_START_S).get(engine, OTHER_START_S)


def compare_argv(
    engine: str,
    results: Path,
    mode: str,
    scenarios: tuple[str, ...],
    extra: tuple[str, ...] = (),
    barrier: Path | None = None,
    run_as: str | None = None,
) -> tuple[str, ...]:
    """`run_as`: drive another engine under this step's name (the rehearsal runs the null engine), without the
    engine's own args."""
    named = tuple(arg for name in scenarios for arg in ("--scenario", name))
    args = START_ARGS.get(engine, ()) + (HTTP_ONLY_ARGS.get(engine, ()) if mode == "http" else ())
    if barrier is not None:
        args += TOGETHER_ARGS.get(engine, ())
        extra = (*extra, "--start-barrier", str(barrier), "--no-isolate")  # the compare process is the engine's
    pairs = tuple(arg for pair in args for arg in ("--engine-arg", pair)) + ENGINE_ARGS.get(engine, ())
    if run_as is not None:
        pairs, extra = (), (*extra, "--quick", "--output-tokens", "16")  # the rehearsal: seconds, not minutes
    return (
        sys.executable,
        "-m",
        "compare",
        "--engine",
        run_as or engine,
        "--model",
        MODEL,
        "--out",
        str(results),
        "--no-progress",
        "--mode",
        mode,
        *pairs,
        *named,
        *extra,
    )


def _step(
    engine: str,
    name: str,
    argv: tuple[str, ...],
    start_s: int,
    run_s: int,
    optional: bool,
    group: str = "",
    barrier: Path | None = None,
    label: str = "",
) -> CampaignStep:
    """A step on its own is capped at 1.4 x its estimate; a group member's cap counts from its release."""
    cap_s = int(run_s * 1.5) + 30 if group else int((start_s + run_s) * 1.4)
    return CampaignStep(
        engine, Step(name, argv, start_s + run_s, optional=optional), cap_s, group, run_s, barrier, label
    )


def _together(
    name: str,
    engines: tuple[str, ...],
    results: Path,
    mode: str,
    scenarios,
    optional: bool,
    run_s: dict[str, int],
    warm: bool,
    extra: dict[str, tuple[str, ...]] | None = None,
    run_as: dict[str, str] | None = None,
) -> list[CampaignStep]:
    together = len(engines) > 1  # one engine alone needs no barrier
    barrier = results.parent / "barriers" / name if together else None
    steps = []
    for engine in engines:
        folder = results / f"{engine}-{name}"
        argv = compare_argv(
            engine, folder, mode, scenarios(engine), (extra or {}).get(engine, ()), barrier, (run_as or {}).get(engine)
        )
        runs_as = (run_as or {}).get(engine, engine)
        steps.append(
            _step(
                engine,
                f"{engine}-{name}",
                argv,
                start_estimate(engine, warm),
                run_s[engine],
                optional,
                name if together else "",
                barrier,
                f"{runs_as}-http" if mode == "http" else runs_as,
            )
        )
    return steps


def plan(
    results: Path, engines: tuple[str, ...] = ("sglang", "vllm"), run_as: dict[str, str] | None = None
) -> list[CampaignStep]:
    """In order of value (#24, #28, #49): traffic in-process on both engines started together (SGLang's with its
    profiler window first and its telemetry), then this wave's step-cost surface and speculative decoding on vLLM,
    HTTP on both (started together), the anchor, ablations, the matrix.
    `run_as` (the rehearsal): the engines' steps drive these engines instead, and only the traffic unit is planned."""

    def traffic(engine: str) -> tuple[str, ...]:
        return ((PROFILED_SCENARIO,) if engine == "sglang" else ()) + TRAFFIC_SCENARIOS

    profiled = {"sglang": ("--profile", PROFILED_CELL)}
    run_s = {e: TRAFFIC_RUN_S + (PROFILED_RUN_S if e == "sglang" else 0) for e in engines}
    steps = _together(
        "traffic",
        engines,
        results,
        "inprocess",
        traffic,
        False,
        run_s,
        warm=False,
        extra={} if run_as else profiled,
        run_as=run_as,
    )
    if run_as:
        return steps
    if "vllm" in engines:
        argv = compare_argv("vllm", results / "steps", "inprocess", (STEPS_SCENARIO,), ("--quick",))
        steps.append(_step("vllm", "steps", argv, start_estimate("vllm", warm=True), STEPS_RUN_S, True))
        argv = compare_argv(
            "vllm",
            results / SPEC_SET,
            "inprocess",
            (SPEC_SCENARIO,),
            ("--quick", "--concurrency", "16", "--ablation", SPEC_SET),
        )
        warm = start_estimate("vllm", warm=True)
        steps.append(
            _step("vllm", SPEC_SET, argv, warm, (SPEC_POINTS - 1) * warm + SPEC_POINTS * ABLATION_POINT_RUN_S, True)
        )
    servers = tuple(e for e in engines if e in SERVER_ENGINES)
    if servers:
        concurrent = (str(KIT / "concurrent-gpu.json"),)
        steps += _together(
            "http",
            servers,
            results,
            "http",
            lambda e: concurrent,
            True,
            {e: HTTP_RUN_S for e in servers},
            warm=True,
            extra={e: ("--quick",) for e in servers},
        )
    if "vllm" in engines:
        # 2 runs per tool, not 4: the GPU machine's clients do not share cores with the server, and time is scarce
        anchor = (
            sys.executable,
            "-m",
            "compare.anchor_vllm",
            "--model",
            MODEL,
            "--concurrency",
            "16",
            "--num-prompts",
            "64",
            "--repetitions",
            "2",
            "--out",
            str(results / "anchor-vllm"),
        )
        steps.append(_step("vllm", "anchor-vllm-bench", anchor, start_estimate("vllm", warm=True), 60, optional=True))
    for engine in engines:
        for name in ABLATION_SETS.get(engine, ()):
            argv = compare_argv(
                engine,
                results / name,
                "inprocess",
                (str(KIT / "concurrent-gpu.json"),),
                ("--quick", "--ablation", name),
            )
            steps.append(
                _step(
                    engine,
                    name,
                    argv,
                    start_estimate(engine, warm=True),
                    start_estimate(engine, warm=True) + 2 * ABLATION_POINT_RUN_S,
                    optional=True,
                )
            )  # two points, one start each
    steps += _together(
        "matrix",
        engines,
        results,
        "inprocess",
        lambda e: INPROCESS_SCENARIOS,
        True,
        {e: INPROCESS_RUN_S for e in engines},
        warm=True,
    )
    return steps


def units(steps: list[CampaignStep]) -> list[list[CampaignStep]]:
    """Consecutive steps of one group form one unit; any other step is a unit of its own."""
    grouped: list[list[CampaignStep]] = []
    for step in steps:
        if step.group and grouped and grouped[-1][0].group == step.group:
            grouped[-1].append(step)
        else:
            grouped.append([step])
    return grouped


def unit_estimate(unit: list[CampaignStep]) -> int:
    """Together: the longest start (a little slower, both compiling at once), then each run in turn."""
    if len(unit) == 1:
        return unit[0].step.estimate_s
    longest = max(s.start_s for s in unit)
    return int(longest * TOGETHER_SLOWDOWN) + sum(s.run_s for s in unit)


def lease_timeline(
    steps: list[CampaignStep], num_calls: int, measured: Measured = MEASURED, lease_s: int = 900
) -> dict:
    """From the lease's first second: machine start, staging calls, installs, then the units in order. Returns when
    the required units end, what is left before the lease ends, and whether that is at least LEASE_MARGIN_S."""
    calls_end = measured.machine_start_s + (num_calls - 1) * (measured.staging_call_s + measured.operator_gap_s)
    # SGLang's parts come first (tools/gpu/calls.py): it installs after about half the calls, vLLM after the last
    first_engine_ready = measured.machine_start_s + math.ceil(num_calls / 2) * (
        measured.staging_call_s + measured.operator_gap_s
    )
    t = max(first_engine_ready, calls_end) + measured.install_s
    rows, required_end = [], None
    for unit in units(steps):
        estimate = unit_estimate(unit)
        rows.append(
            {
                "unit": [s.step.name for s in unit],
                "starts_s": t,
                "estimate_s": estimate,
                "optional": all(s.step.optional for s in unit),
            }
        )
        t += estimate
        if not rows[-1]["optional"]:
            required_end = t
    required_end = (required_end or t) + measured.final_pack_s
    return {
        "calls": num_calls,
        "units": rows,
        "required_end_s": required_end,
        "lease_s": lease_s,
        "margin_s": lease_s - required_end,
        "fits": lease_s - required_end >= LEASE_MARGIN_S,
    }
