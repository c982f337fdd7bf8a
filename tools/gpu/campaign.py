"""On the lent GPU machine: the whole matrix as one background run that outlives the device call.

    python3 -m tools.gpu.campaign plan  --deadline-s 1400          # the steps, their estimates, what fits
    python3 -m tools.gpu.campaign start --deadline-s 1400          # returns at once; the run goes on (setsid)
    python3 -m tools.gpu.campaign poll  [--wait-s 540]             # progress; every finished file into $OUT

The device machine keeps a process that started its own session running until the machine goes back
(idle 30 s between calls, 30 minutes held at most). `start` copies the repo to the campaign's home and
launches `run` there in a new session; `poll` waits up to --wait-s (returning early when the run ends),
then prints the state and packs everything written so far into $OUT, so the last poll that came back
holds every finished results file.

`run` installs each engine once all its parts are staged (`device stage --no-install`; the next engine's
install overlaps the previous engine's run), then runs the steps in order of value: in-process for both
engines first (one engine start serves every scenario), then HTTP mode, then the `vllm bench serve`
anchor. Each engine runs in its own child process, so one engine's crash or memory does not spoil
the next. A step gets at most its cap and what is left before the deadline; one that runs over gets
SIGINT (finished cells are kept), then SIGKILL. A step whose estimate no longer fits is skipped, on record.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.gpu.device import HOME, engine_home, install, status
from tools.gpu.validate import ENGINE_ARGS, ENGINE_START_S, MODEL, pack_results, run_step, Step

ROOT = Path(__file__).resolve().parents[2]
KIT = Path("tools/gpu")
INPROCESS_SCENARIOS = (str(KIT / "concurrent-gpu.json"), "prefix-cache", "long-context", "single", str(KIT / "korean-gpu.json"))
# the five in-process scenarios once an engine is up, measured 2026-11-23 on one H100 with the 8B model:
# vLLM 430 s, SGLang 450 s (results/gpu/2026-11-23-nvidia-h100-x1/)
INPROCESS_RUN_S = 450
HTTP_RUN_S = 110
INSTALL_WAIT_S = 900  # an engine whose parts never all arrive is given up after this long


@dataclass(frozen=True)
class CampaignStep:
    engine: str
    step: Step
    cap_s: int  # at most this long, even when the deadline is further away


def home_dir(home: Path = HOME) -> Path:
    return home / "campaign"


def compare_argv(engine: str, results: Path, mode: str, scenarios: tuple[str, ...]) -> tuple[str, ...]:
    named = tuple(arg for name in scenarios for arg in ("--scenario", name))
    return (sys.executable, "-m", "compare", "--engine", engine, "--model", MODEL, "--out", str(results),
            "--no-progress", "--mode", mode, *ENGINE_ARGS.get(engine, ()), *named)  # fmt: skip


def plan(results: Path, engines: tuple[str, ...] = ("vllm", "sglang")) -> list[CampaignStep]:
    """In order of value: in-process for every engine (H1, H4), then HTTP mode, then the anchor."""
    steps = []
    for engine in engines:
        argv = compare_argv(engine, results / f"{engine}-inprocess", "inprocess", INPROCESS_SCENARIOS)
        estimate = ENGINE_START_S[engine] + INPROCESS_RUN_S
        steps.append(CampaignStep(engine, Step(f"{engine}-inprocess", argv, estimate), int(estimate * 1.4)))
    for engine in reversed(engines):  # SGLang's server was never reached; vLLM's was, on 2026-11-22
        argv = compare_argv(engine, results / f"{engine}-http", "http", (str(KIT / "concurrent-gpu.json"),))
        estimate = ENGINE_START_S[engine] + HTTP_RUN_S
        steps.append(CampaignStep(engine, Step(f"{engine}-http", argv, estimate, optional=True), int(estimate * 1.4)))
    if "vllm" in engines:
        # 2 runs per tool, not 4: the GPU machine's clients do not share cores with the server, and time is scarce
        anchor = (sys.executable, "-m", "compare.anchor_vllm", "--model", MODEL, "--concurrency", "16",
                  "--num-prompts", "64", "--repetitions", "2", "--out", str(results / "anchor-vllm"))  # fmt: skip
        estimate = ENGINE_START_S["vllm"] + 60
        steps.append(CampaignStep("vllm", Step("anchor-vllm-bench", anchor, estimate, optional=True), int(estimate * 1.4)))
    return steps


def read_state(home: Path) -> dict[str, Any]:
    path = home / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(home: Path, state: dict[str, Any]) -> None:
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(home / "state.json")


def install_all(engines: tuple[str, ...], home: Path, device_home: Path, limit_s: float) -> None:
    """Install each engine as soon as all its parts are staged, in whatever order they complete (the
    installer thread's body); each outcome lands in installs/<engine>.json, which the steps wait for."""
    done_dir = home / "installs"
    done_dir.mkdir(parents=True, exist_ok=True)
    started, pending = time.monotonic(), list(engines)
    while pending and time.monotonic() - started < limit_s:
        held = status(device_home)["engines"]
        ready = [e for e in pending if e in held and held[e]["parts_held"] == held[e]["parts_total"]]
        if not ready:
            time.sleep(2)
            continue
        engine = ready[0]
        pending.remove(engine)
        t0 = time.monotonic()
        try:
            report = install(engine, device_home)
            # imports decide: the wheels name requirements no one carries (CuTe DSL, tilelang ...) on paths
            # we do not run, and those are listed in the report, not fatal
            ok = all(v == "ok" for v in report["imports"].values())
            outcome = {"ok": ok, **report}
        except Exception as exc:  # a corrupt part or a broken unpack: this engine's steps are skipped
            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        outcome.update(started_s=round(t0 - started, 1), wall_s=round(time.monotonic() - t0, 1))
        (done_dir / f"{engine}.json").write_text(json.dumps(outcome, indent=1))
    for engine in pending:
        (done_dir / f"{engine}.json").write_text(json.dumps({"ok": False, "error": f"parts not all staged within {limit_s:.0f} s"}))


def wait_installed(engine: str, home: Path, limit_s: float) -> dict[str, Any]:
    path = home / "installs" / f"{engine}.json"
    started = time.monotonic()
    while not path.is_file() and time.monotonic() - started < limit_s:
        time.sleep(1)
    return json.loads(path.read_text()) if path.is_file() else {"ok": False, "error": "install did not finish"}


def installs(home: Path) -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((home / "installs").glob("*.json"))}


def engine_env(engine: str, device_home: Path, repo: Path, cache: Path) -> dict[str, str]:
    from tools.gpu.pack import read_manifest

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ENGINEBENCH_CACHE": str(cache), "PYTHONPATH": f"{engine_home(engine, device_home) / 'site'}:{repo}"}  # fmt: skip
    env.update(read_manifest(engine_home(engine, device_home) / "manifest.json").get("env", {}))
    return env


def run(deadline_s: float, home: Path, device_home: Path = HOME, steps: list[CampaignStep] | None = None,
        install_wait_s: float = INSTALL_WAIT_S) -> dict[str, Any]:  # fmt: skip
    """The background body: every step in order, under one deadline; the state file says where it is."""
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    results = home / "results"
    steps = plan(results) if steps is None else steps
    shutil.rmtree(home / "installs", ignore_errors=True)
    engines = tuple(dict.fromkeys(s.engine for s in steps))
    threading.Thread(target=install_all, args=(engines, home, device_home, install_wait_s), daemon=True).start()
    state = {"deadline_s": deadline_s, "started_unix": time.time(), "finished": False,
             "steps": [{"step": s.step.name, "outcome": "pending", "estimate_s": s.step.estimate_s} for s in steps]}  # fmt: skip
    write_state(home, state)
    repo = home / "repo" if (home / "repo").is_dir() else ROOT  # start() copies it there
    for index, planned in enumerate(steps):
        remaining = deadline_s - (time.monotonic() - started)
        entry = state["steps"][index]
        if planned.step.optional and remaining < planned.step.estimate_s:
            entry["outcome"] = f"skipped: ~{planned.step.estimate_s} s needed, {remaining:.0f} s left"
            write_state(home, state)
            continue
        entry["outcome"] = "waiting for install"
        write_state(home, state)
        installed = wait_installed(planned.engine, home, max(remaining, 1))
        if not installed["ok"]:
            entry["outcome"] = f"skipped: {planned.engine} is not installed: {installed.get('error', 'imports failed')}"
            write_state(home, state)
            continue
        remaining = deadline_s - (time.monotonic() - started)
        entry.update(outcome="running", started_s=round(time.monotonic() - started, 1))
        write_state(home, state)
        (results / planned.step.name).mkdir(parents=True, exist_ok=True)
        env = engine_env(planned.engine, device_home, repo, home / "cache")
        log = results / planned.step.name / f"{planned.step.name}.log"
        entry.update(run_step(planned.step, min(remaining, planned.cap_s), log, env, cwd=repo))
        write_state(home, state)
    state["finished"] = True
    state["wall_s"] = round(time.monotonic() - started, 1)
    state["installs"] = installs(home)
    write_state(home, state)
    return state


def start(deadline_s: float, home: Path, repo: Path = ROOT) -> int:
    """Copy the repo (the call's copy goes away with the call), then launch `run` in its own session."""
    if (home / "state.json").is_file() and not read_state(home).get("finished", True):
        print(f"campaign: already running in {home}; poll it")
        return 0
    shutil.rmtree(home / "repo", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(".gpu", ".git", ".venv", "results", "__pycache__", "build", "*.egg-info", ".pytest_cache")
    shutil.copytree(repo, home / "repo", ignore=skip)
    argv = [sys.executable, "-m", "tools.gpu.campaign", "run", "--deadline-s", str(deadline_s), "--home", str(home)]
    with (home / "campaign.log").open("a") as log:
        process = subprocess.Popen(argv, cwd=home / "repo", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "PYTHONPATH": str(home / "repo")})  # fmt: skip
    (home / "pid").write_text(str(process.pid))
    print(f"campaign: started pid {process.pid}, deadline {deadline_s:.0f} s; poll with python3 -m tools.gpu.campaign poll")
    return 0


def poll(home: Path, wait_s: float, out: Path) -> dict[str, Any]:
    """Wait until the run ends or wait_s passes, then pack every result so far into out."""
    waited = time.monotonic()
    while time.monotonic() - waited < wait_s and not read_state(home).get("finished", False):
        time.sleep(5)
    state = read_state(home)
    out.mkdir(parents=True, exist_ok=True)
    if (home / "results").is_dir():
        (home / "results" / "campaign-state.json").write_text(json.dumps({**state, "installs": installs(home)}, indent=1))
        state["packed"] = pack_results(home / "results", out, "campaign")
    return state


def progress_lines(state: dict[str, Any], home: Path) -> list[str]:
    lines = [f"campaign: finished={state.get('finished')} deadline {state.get('deadline_s')} s"]
    for engine, done in installs(home).items():
        lines.append(f"  install {engine}: ok={done.get('ok')} {done.get('wall_s', '')} s {done.get('error', '')}")
    for entry in state.get("steps", []):
        lines.append(f"  {entry['step']:20} {entry['outcome']}  rc={entry.get('returncode')} wall={entry.get('wall_s')}")
        log = home / "results" / entry["step"] / f"{entry['step']}.log"
        if entry["outcome"] == "running" and log.is_file():
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(("cell ", "== "))]
            lines += [f"    {line}" for line in tail[-6:]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=("plan", "start", "run", "poll"))
    parser.add_argument("--deadline-s", type=float, default=1200.0, help="seconds the run may take from its start")
    parser.add_argument("--wait-s", type=float, default=0.0, help="poll: wait this long unless the run ends first")
    parser.add_argument("--home", type=Path, default=home_dir())
    args = parser.parse_args(argv)
    if args.verb == "plan":
        total = 0
        for planned in plan(args.home / "results"):
            total += planned.step.estimate_s
            fits = "fits" if total <= args.deadline_s else "past the deadline"
            print(f"{planned.step.name:20} ~{planned.step.estimate_s:4d} s (cap {planned.cap_s} s, cumulative {total} s, {fits})"
                  f"{' optional' if planned.step.optional else ''}: {' '.join(planned.step.argv[1:])}")  # fmt: skip
        return 0
    if args.verb == "start":
        return start(args.deadline_s, args.home)
    if args.verb == "run":
        run(args.deadline_s, args.home)
        return 0
    state = poll(args.home, args.wait_s, Path(os.environ.get("OUT", "/tmp/enginebench-gpu/out")))
    print("\n".join(progress_lines(state, args.home)))
    print(f"campaign: packed {', '.join(state.get('packed', [])) or 'nothing yet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
