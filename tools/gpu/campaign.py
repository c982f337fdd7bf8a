"""On the lent GPU machine: one background campaign per lease (900 s of device time in all, start-up included),
the units in order of value, stopped cleanly at its deadline with everything finished already packed.

    python3 -m tools.gpu.campaign plan                     # the units, their estimates, the lease timeline
    python3 -m tools.gpu.campaign start [--deadline-s 800]  # returns at once; the run has its own session
    python3 -m tools.gpu.campaign poll [--wait-s 540]       # progress; every finished file into $OUT

The device machine keeps a process that started its own session running until the machine goes back.
`start` copies the call's copy of the repo (root-level results/, .gpu/ ... left out, nothing deeper) to the
campaign's home and launches `run` there; `poll` waits up to --wait-s (returning early when the run ends or
dies), prints the state and puts the packed results into $OUT, within its limits (tools/gpu/outbox.py).

`run` installs each engine, in its own thread, once all its parts are staged (tools/gpu/calls.py), then runs
the units of tools/gpu/campaign_plan.py: first SGLang and vLLM started together on the one GPU, each with a
32 GiB KV budget, and measured one at a time (shared-prefix and multi-turn: H1 under load; SGLang's profiler
window and telemetry, validated on record); then, while their estimates still fit, HTTP mode on both, the
`vllm bench serve` anchor, ablations and the matrix. A unit gets at most its cap and what is left before the
deadline; one that runs over gets SIGINT (finished cells are kept), then SIGKILL, and whatever a step started,
in any session, is killed when it ends (tools/gpu/proctree.py). After every unit the results are packed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from compare.run.points.isolate import gpu_memory_used_mib, wait_gpu_released
from tools.gpu import compile_cache, outbox
from tools.gpu.calls import LIMITS
from tools.gpu.campaign_plan import (
    COMPILE_CACHE_ENV,
    START_ARGS,
    TOGETHER_ARGS,
    CampaignStep,
    plan,
    unit_estimate,
    units,
)
from tools.gpu.device import HOME, engine_home
from tools.gpu.installs import install_all, installed, installs
from tools.gpu.progress import print_plan, progress_lines, run_alive
from tools.gpu.units import UnitContext, run_group, run_single

OUT_RESERVE = (16 << 20, 3)  # bytes and files of $OUT kept for the compile cache (and packing.json)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEADLINE_S = 800.0  # 900 s lease - ~40 s machine start - ~60 s last poll (tools/gpu/lease.py)
INSTALL_WAIT_S = 900  # an engine whose parts never all arrive is given up after this long


def home_dir(home: Path = HOME) -> Path:
    return home / "campaign"


def read_state(home: Path) -> dict[str, Any]:
    path = home / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(home: Path, state: dict[str, Any]) -> None:
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(home / "state.json")


def engine_env(
    engine: str, device_home: Path, repo: Path, cache: Path, compile_cache: Path | None = None
) -> dict[str, str]:
    from tools.gpu.pack import read_manifest

    # VLLM_LOGGING_LEVEL=INFO: vLLM's engine core logs its start phases (its per-step stat logger stays off:
    # engines/vllm/telemetry.py quiet_step_logger); SGLang's profiler without Python stacks keeps one window's trace
    # small enough for $OUT (kernels, shapes and CPU ops are still recorded)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ENGINEBENCH_CACHE": os.environ.get("ENGINEBENCH_CACHE", str(cache)),
        "VLLM_LOGGING_LEVEL": "INFO",
        "SGLANG_PROFILE_WITH_STACK": "false",
        "PYTHONPATH": f"{engine_home(engine, device_home) / 'site'}:{repo}",
    }
    if compile_cache is not None:
        env.update({name: str(compile_cache / sub) for name, sub in COMPILE_CACHE_ENV.items()})
    env.update(read_manifest(engine_home(engine, device_home) / "manifest.json").get("env", {}))
    return env


def pack_now(home: Path, state: dict[str, Any]) -> list[str]:
    """Everything written so far, with the state, into home/packed (what `poll` hands out): within $OUT's limits,
    with room for a compile cache (OUT_RESERVE); profiler traces that do not fit are named in the state."""
    results = home / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "campaign-state.json").write_text(json.dumps({**state, "installs": installs(home)}, indent=1))
    packed = home / "packed.tmp"
    shutil.rmtree(packed, ignore_errors=True)
    reserve_bytes, reserve_files = OUT_RESERVE
    report = outbox.pack_results(
        results, packed, "results-campaign", LIMITS.out_total_bytes - reserve_bytes, LIMITS.out_files - reserve_files
    )
    (packed / "packing.json").write_text(json.dumps(report))
    shutil.rmtree(home / "packed", ignore_errors=True)
    packed.replace(home / "packed")  # a poll never copies a half-written pack
    return report["files"]


def run(
    deadline_s: float,
    home: Path,
    device_home: Path = HOME,
    steps: list[CampaignStep] | None = None,
    install_wait_s: float = INSTALL_WAIT_S,
    run_as: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The background body: every unit in order, under one deadline; the state file says where it is."""
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    results = home / "results"
    steps = plan(results, run_as=run_as) if steps is None else steps
    shutil.rmtree(home / "installs", ignore_errors=True)
    engines = tuple(dict.fromkeys(s.engine for s in steps))
    threading.Thread(target=install_all, args=(engines, home, device_home, install_wait_s), daemon=True).start()
    state = {
        "deadline_s": deadline_s,
        "started_unix": time.time(),
        "finished": False,
        "steps": [
            {"step": s.step.name, "group": s.group, "outcome": "pending", "estimate_s": s.step.estimate_s}
            for s in steps
        ],
    }
    write_state(home, state)
    repo = home / "repo" if (home / "repo").is_dir() else ROOT  # start() copies it there
    cache_dir = home / "compile-cache"
    state["compile_cache"] = {
        "env": {name: str(cache_dir / sub) for name, sub in COMPILE_CACHE_ENV.items()},
        "carried_in": compile_cache.unpack_held(device_home, home),
    }
    state["start_args"] = {engine: list(START_ARGS.get(engine, ())) for engine in engines}
    state["together_args"] = {engine: list(TOGETHER_ARGS.get(engine, ())) for engine in engines}
    ctx = UnitContext(
        results=results,
        deadline_at=started + deadline_s,
        cwd=repo,
        started_at=started,
        env_for=lambda engine: engine_env(engine, device_home, repo, home / "cache", cache_dir),
        installed=lambda engine: installed(engine, home),
        save=lambda: write_state(home, state),
    )
    entries = iter(state["steps"])
    for unit in units(steps):
        unit_entries = [next(entries) for _ in unit]
        remaining = ctx.remaining()
        needed = unit_estimate(unit)
        if all(s.step.optional for s in unit) and remaining < needed:
            for entry in unit_entries:
                entry["outcome"] = f"skipped: ~{needed} s needed, {remaining:.0f} s left"
            write_state(home, state)
            continue
        gpu_before = gpu_memory_used_mib()
        if len(unit) == 1:
            run_single(unit[0], unit_entries[0], ctx)
        else:
            run_group(unit, unit_entries, ctx)
        unit_entries[-1]["gpu_memory_after"] = wait_gpu_released(gpu_before, timeout_s=30)
        write_state(home, state)
        pack_now(home, state)
    state["finished"] = True
    state["wall_s"] = round(time.monotonic() - started, 1)
    state["installs"] = installs(home)
    write_state(home, state)
    state["packed"] = pack_now(home, state)
    return state


COPY_SKIP_TOP = {".gpu", ".git", ".venv", "results", "build", ".pytest_cache", "report"}  # at the repo's root only
COPY_SKIP_ANY = {"__pycache__"}  # at any depth (a package named results/ or build/ must travel: compare/results)


def top_level_ignore(repo: Path):
    """shutil.ignore_patterns matches at every depth, and dropped the package compare/results/ once; this skips
    the repo's own results/, .gpu/ ... at its root only."""
    root = str(repo)

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in COPY_SKIP_ANY or n.endswith(".egg-info")}
        if folder == root:
            skip |= {n for n in names if n in COPY_SKIP_TOP}
        return skip

    return ignore


def start(deadline_s: float, home: Path, repo: Path = ROOT, run_as: str | None = None) -> int:
    """Copy the repo (the call's copy goes away with the call), then launch `run` in its own session."""
    if (home / "state.json").is_file() and not read_state(home).get("finished", True):
        print(f"campaign: already running in {home}; poll it")
        return 0
    shutil.rmtree(home / "repo", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo, home / "repo", ignore=top_level_ignore(repo))
    argv = [
        sys.executable,
        "-m",
        "tools.gpu.campaign",
        "run",
        "--deadline-s",
        str(deadline_s),
        "--home",
        str(home),
        *(["--run-as", run_as] if run_as else []),
    ]
    with (home / "campaign.log").open("a") as log:
        process = subprocess.Popen(
            argv,
            cwd=home / "repo",
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(home / "repo")},
        )
    (home / "pid").write_text(str(process.pid))
    print(
        f"campaign: started pid {process.pid}, deadline {deadline_s:.0f} s; poll with python3 -m tools.gpu.campaign "
        f"poll"
    )
    return 0


def poll(home: Path, wait_s: float, out: Path, pack_cache: bool = False) -> dict[str, Any]:
    """Wait until the run ends or wait_s passes, then put every result so far into out: what the run packed
    after its last unit, or, while one is still running, a fresh pack; then the compile caches if asked and room."""
    waited = time.monotonic()
    while time.monotonic() - waited < wait_s and not read_state(home).get("finished", False) and run_alive(home):
        time.sleep(2)
    state = read_state(home)
    if not state.get("finished") and not run_alive(home):
        log = home / "campaign.log"
        state["run_died"] = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else ["no campaign.log"]
    out.mkdir(parents=True, exist_ok=True)
    if not state.get("finished") and (home / "results").is_dir():
        pack_now(home, state)
    packed = home / "packed"
    if packed.is_dir():
        shutil.copytree(packed, out, dirs_exist_ok=True)
        state["packed"] = sorted(str(p.relative_to(packed)) for p in packed.rglob("*") if p.is_file())
    cache = home / "compile-cache"
    state["compile_cache_raw_bytes"] = (
        sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0
    )
    if pack_cache:
        state["compile_cache_out"] = compile_cache.pack(home, out, *outbox.room_left(out))
    state["out_problems"] = outbox.check(out)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=("plan", "start", "run", "poll"))
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=DEFAULT_DEADLINE_S,
        help=f"seconds the run may take from its start (default {DEFAULT_DEADLINE_S:g}: a fresh 900 s "
        "lease less ~40 s of machine start before `start` and ~60 s for the last poll; optional "
        "units run only while their estimate fits before it)",
    )
    parser.add_argument("--pack-cache", action="store_true", help="poll: also pack the compile caches into $OUT")
    parser.add_argument("--wait-s", type=float, default=0.0, help="poll: wait this long unless the run ends first")
    parser.add_argument("--home", type=Path, default=home_dir())
    parser.add_argument(
        "--run-as",
        metavar="E=X,..",
        help="the rehearsal: drive engine X under step engine E's name (e.g. sglang=null,vllm=engines.null:NullEngine)",
    )
    args = parser.parse_args(argv)
    run_as = dict(pair.split("=", 1) for pair in args.run_as.split(",")) if args.run_as else None
    if args.verb == "plan":
        print_plan(plan(args.home / "results", run_as=run_as))
        return 0
    if args.verb == "start":
        return start(args.deadline_s, args.home, run_as=args.run_as)
    if args.verb == "run":
        run(args.deadline_s, args.home, run_as=run_as)
        return 0
    state = poll(args.home, args.wait_s, Path(os.environ.get("OUT", "/tmp/enginebench-gpu/out")), args.pack_cache)
    print("\n".join(progress_lines(state, args.home)))
    print(f"campaign: packed {', '.join(state.get('packed', [])) or 'nothing yet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
