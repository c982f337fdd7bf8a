"""The GPU campaign's plan: what runs on a lease, in order of value, with each engine's start cuts and the
estimates that decide what still fits (tools/gpu/campaign.py runs it)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tools.gpu.validate import ENGINE_ARGS, ENGINE_START_S, MODEL, Step

KIT = Path("tools/gpu")
INPROCESS_SCENARIOS = (str(KIT / "concurrent-gpu.json"), "prefix-cache", "long-context", "single", str(KIT / "korean-gpu.json"))
TRAFFIC_SCENARIOS = (str(KIT / "shared-prefix-gpu.json"), "multi-turn")
PROFILED_SCENARIO, PROFILED_CELL = "smoke", "c1-in32"  # SGLang's profiler window: one short cell
ABLATION_SETS = {"vllm": ("vllm-cuda-graphs", "vllm-async-scheduling"), "sglang": ("sglang-radix", "sglang-overlap")}
# Engine-start cuts. Measured 2026-11-23 on the H100: vLLM's CUDA-graph capture took 3 s (51 + 35 sizes) and
# SGLang's decode capture 2 s, so limiting them to the campaign's batch sizes (concurrency <= 64) saves little
# and is done; SGLang's prefill capture took 183 s, of which 175 s is torch.compile of the first size, so its
# sizes are kept (a cut there would change the prefill kernels TTFT measures) and the compile cache does the
# work instead. SGLang's server warmup request is skipped: the harness's own warmups (stored apart) replace it.
START_CUTS = {
    "vllm": ('vllm.compilation_config={"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]}',),
    "sglang": ("sglang.cuda_graph_max_bs_decode=64", "sglang.skip_server_warmup=true", "sglang.log_level=info"),
}
# compile caches in the campaign's home: a second start of an engine in the same lease loads what the first one
# compiled, and `poll --pack-cache` brings them out, so the next lease can carry them in (`start --compile-cache`)
COMPILE_CACHE_ENV = {"VLLM_CACHE_ROOT": "vllm", "TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton",
                     "FLASHINFER_WORKSPACE_BASE": "flashinfer"}  # fmt: skip
# measured 2026-11-23 on one H100 with the 8B model (results/gpu/2026-11-23-nvidia-h100-x1/): the five
# in-process scenarios once an engine is up took vLLM 430 s, SGLang 450 s; concurrent --quick over HTTP ~110 s
INPROCESS_RUN_S = 450
HTTP_RUN_S = 110
SERVER_ENGINES = ("vllm", "sglang")  # engines with an HTTP server and ablation sets
OTHER_START_S = 10  # an engine without a measured start (the null engine in tests)
TRAFFIC_RUN_S = 150  # estimated from the same run's throughput: 256 shared-prefix requests at c=16/64 + multi-turn
PROFILED_RUN_S = 30
ABLATION_POINT_RUN_S = 60


@dataclass(frozen=True)
class CampaignStep:
    engine: str
    step: Step
    cap_s: int  # at most this long, even when the deadline is further away


def compare_argv(engine: str, results: Path, mode: str, scenarios: tuple[str, ...], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    named = tuple(arg for name in scenarios for arg in ("--scenario", name))
    cuts = tuple(arg for cut in START_CUTS.get(engine, ()) for arg in ("--engine-arg", cut))
    return (sys.executable, "-m", "compare", "--engine", engine, "--model", MODEL, "--out", str(results),
            "--no-progress", "--mode", mode, *ENGINE_ARGS.get(engine, ()), *cuts, *named, *extra)  # fmt: skip


def _step(engine: str, name: str, argv: tuple[str, ...], estimate_s: int, optional: bool) -> CampaignStep:
    return CampaignStep(engine, Step(name, argv, estimate_s, optional=optional), int(estimate_s * 1.4))


def plan(results: Path, engines: tuple[str, ...] = ("vllm", "sglang")) -> list[CampaignStep]:
    """In order of value (#24): traffic in-process (SGLang's with its profiler window), HTTP and the anchor,
    ablations, then the rest of the matrix."""
    steps = []
    for engine in engines:
        profiled = engine == "sglang"
        scenarios = TRAFFIC_SCENARIOS + ((PROFILED_SCENARIO,) if profiled else ())
        extra = ("--profile", PROFILED_CELL) if profiled else ()
        argv = compare_argv(engine, results / f"{engine}-traffic", "inprocess", scenarios, extra)
        estimate = ENGINE_START_S.get(engine, OTHER_START_S) + TRAFFIC_RUN_S + (PROFILED_RUN_S if profiled else 0)
        steps.append(_step(engine, f"{engine}-traffic", argv, estimate, optional=False))
    for engine in [e for e in reversed(engines) if e in SERVER_ENGINES]:  # SGLang's server was never reached; vLLM's was, on 2026-11-22
        argv = compare_argv(engine, results / f"{engine}-http", "http", (str(KIT / "concurrent-gpu.json"),), ("--quick",))
        steps.append(_step(engine, f"{engine}-http", argv, ENGINE_START_S.get(engine, OTHER_START_S) + HTTP_RUN_S, optional=True))
    if "vllm" in engines:
        # 2 runs per tool, not 4: the GPU machine's clients do not share cores with the server, and time is scarce
        anchor = (sys.executable, "-m", "compare.anchor_vllm", "--model", MODEL, "--concurrency", "16",
                  "--num-prompts", "64", "--repetitions", "2", "--out", str(results / "anchor-vllm"))  # fmt: skip
        steps.append(_step("vllm", "anchor-vllm-bench", anchor, ENGINE_START_S["vllm"] + 60, optional=True))
    for engine in engines:
        for name in ABLATION_SETS.get(engine, ()):
            argv = compare_argv(engine, results / name, "inprocess", (str(KIT / "concurrent-gpu.json"),),
                                ("--quick", "--ablation", name))  # fmt: skip
            estimate = 2 * (ENGINE_START_S.get(engine, OTHER_START_S) + ABLATION_POINT_RUN_S)  # two points, one start each
            steps.append(_step(engine, name, argv, estimate, optional=True))
    for engine in engines:
        argv = compare_argv(engine, results / f"{engine}-matrix", "inprocess", INPROCESS_SCENARIOS)
        steps.append(_step(engine, f"{engine}-matrix", argv, ENGINE_START_S.get(engine, OTHER_START_S) + INPROCESS_RUN_S, optional=True))
    return steps
