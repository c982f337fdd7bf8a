"""On the lent GPU machine: one engine's validation run inside one 10-minute device call.

    python3 -m tools.gpu.validate --engine vllm|sglang [--budget-s 540] [--plan]

Steps (synthetic:llama-3.1-8b: dummy bf16 weights, the real Llama-3 tokenizer; GPU sampled by pynvml):
  1. one `python -m compare --mode both --quick`: smoke, then reduced single, concurrent at 1/16/64,
     long-context, prefix-cache and korean, in-process, then again through the engine's own HTTP
     server (two engine starts in all, the fewest that give the HTTP overhead);
  2. vllm only, if the budget still allows: the cross-check with `vllm bench serve`.
Each step runs under what is left of the budget. A step that runs out gets SIGINT (finished cells are
kept), then SIGKILL. Whatever was written is packed into $OUT (at most 8 files of 16 MiB) either way.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.run.points.isolate import interruptible
from tools.gpu.device import engine_home
from tools.gpu.calls import LIMITS
from tools.gpu.outbox import pack_results
from tools.gpu.pack import read_manifest
from tools.gpu.proctree import MARK, kill_marked

ROOT = Path(__file__).resolve().parents[2]
MODEL = "synthetic:llama-3.1-8b"
CONCURRENT_SCENARIO = Path(__file__).with_name("concurrent-1-16-64.json")
# seconds to a ready engine on the 8B model on a fresh H100 (measured 2026-11-22 and 2026-11-23: vLLM 0.26
# 170-183 s with torch.compile and CUDA graphs; SGLang 0.5.17 260-265 s, of which about 175 s is torch.compile
# for its first piecewise prefill CUDA graph), and for the six reduced scenarios once it is up
ENGINE_START_S = {"vllm": 180, "sglang": 265}
SCENARIOS_RUN_S = 90
PACK_MARGIN_S = 30
# sgl_kernel's flash_ops (FlashAttention, 1.1 GB) is dropped from the kit: SGLang runs on flashinfer
ENGINE_ARGS = {"sglang": ("--engine-arg", "sglang.attention_backend=flashinfer")}


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    estimate_s: int
    optional: bool = False  # run only when the estimate still fits


def plan(engine: str, results: Path, mode: str = "both") -> list[Step]:
    base = (
        sys.executable,
        "-m",
        "compare",
        "--engine",
        engine,
        "--model",
        MODEL,
        "--out",
        str(results),
        "--no-progress",
        *ENGINE_ARGS.get(engine, ()),
    )
    start = ENGINE_START_S[engine]
    scenarios = _scenarios("smoke", "single", str(CONCURRENT_SCENARIO), "long-context", "prefix-cache", "korean")
    # one command: the in-process engine runs every scenario, then its own HTTP server runs them again
    starts = 2 if mode == "both" else 1
    steps = [
        Step(f"scenarios-{mode}", (*base, "--quick", *scenarios, "--mode", mode), starts * (start + SCENARIOS_RUN_S))
    ]
    if engine == "vllm":
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
            str(results),
        )
        steps.append(Step("anchor-vllm-bench", anchor, start + 60, optional=True))
    return steps


def _scenarios(*names: str) -> tuple[str, ...]:
    return tuple(arg for name in names for arg in ("--scenario", name))


def fits(steps: list[Step], budget_s: float) -> bool:
    return sum(s.estimate_s for s in steps if not s.optional) + PACK_MARGIN_S <= budget_s


def launch_step(step: Step, log, env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen:
    """Start one step in its own session, marked (tools/gpu/proctree.py) and interruptible, its output to `log`."""
    return subprocess.Popen(
        step.argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, MARK: step.name},
        cwd=cwd,
        start_new_session=True,
        preexec_fn=interruptible,
    )


def run_step(step: Step, remaining_s: float, log: Path, env: dict[str, str], cwd: Path = ROOT) -> dict[str, Any]:
    """Run one step to its end or its time; then kill whatever it left, in any session."""
    started = time.monotonic()
    with log.open("w") as handle:
        process = launch_step(step, handle, env, cwd)
        outcome = finish(process, remaining_s, step.name)
    leftovers = kill_marked(step.name)
    return {
        "step": step.name,
        "argv": list(step.argv),
        "returncode": process.returncode,
        "outcome": outcome,
        "wall_s": round(time.monotonic() - started, 1),
        "log": log.name,
        "leftover_processes_killed": len(leftovers),
    }


def finish(process: subprocess.Popen, remaining_s: float, name: str) -> str:
    """Wait for the step; past its time, SIGINT everything it started (finished cells are kept), then SIGKILL."""
    try:
        process.wait(timeout=max(remaining_s, 1))
        return "done"
    except subprocess.TimeoutExpired:
        kill_marked(name, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_marked(name, signal.SIGKILL)
            process.wait()
        return "out of budget: interrupted (finished cells kept)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=sorted(ENGINE_START_S), required=True)
    parser.add_argument("--budget-s", type=float, default=570.0, help="wall seconds this command may use")
    parser.add_argument("--results", type=Path, default=Path("/tmp/enginebench-gpu/results"))
    parser.add_argument(
        "--mode",
        choices=("both", "inprocess", "http"),
        default="both",
        help="both (default): in-process, then through the engine's own server",
    )
    parser.add_argument("--plan", action="store_true", help="print the steps and estimates, run nothing")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = args.results / args.engine
    steps = plan(args.engine, results, args.mode)
    if args.plan or not fits(steps, args.budget_s):
        for step in steps:
            print(
                f"{step.name:18} ~{step.estimate_s:4d} s {'(optional) ' if step.optional else ''}{' '.join(step.argv)}"
            )
        if not fits(steps, args.budget_s):
            print(
                f"error: the required steps need ~{sum(s.estimate_s for s in steps if not s.optional)} s; "
                f"--budget-s {args.budget_s:g} is too small: run --mode inprocess and --mode http as two calls",
                file=sys.stderr,
            )
            return 2
        return 0
    out = Path(os.environ.get("OUT", "/tmp/enginebench-gpu/out"))
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ENGINEBENCH_CACHE": str(args.results.parent / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    site = engine_home(args.engine) / "site"
    if site.is_dir():  # installed by tools.gpu.device: the staged wheels, ahead of nothing the image has
        env["PYTHONPATH"] = f"{site}:{ROOT}"
        env.update(read_manifest(engine_home(args.engine) / "manifest.json").get("env", {}))
    report = []
    for step in steps:
        remaining = args.budget_s - (time.monotonic() - started) - PACK_MARGIN_S
        if step.optional and remaining < step.estimate_s:
            report.append(
                {"step": step.name, "outcome": f"skipped: ~{step.estimate_s} s needed, {remaining:.0f} s left"}
            )
            continue
        print(f"validate: {step.name} ({remaining:.0f} s left)", flush=True)
        report.append(run_step(step, remaining, results / f"{step.name}.log", env))
        print(
            f"validate: {step.name}: {report[-1]['outcome']}, rc {report[-1]['returncode']}, "
            f"{report[-1]['wall_s']} s; log ends:",
            flush=True,
        )
        print("".join((results / f"{step.name}.log").read_text(errors="replace").splitlines(True)[-12:]), flush=True)
    (results / "validate.json").write_text(
        json.dumps({"engine": args.engine, "model": MODEL, "steps": report}, indent=1)
    )
    files = pack_results(results, out, f"results-{args.engine}", LIMITS.out_total_bytes, LIMITS.out_files)["files"]
    print(f"validate: packed {', '.join(files)} into {out}")
    return 0 if all(r.get("returncode") == 0 for r in report if "returncode" in r) else 1


if __name__ == "__main__":
    sys.exit(main())
