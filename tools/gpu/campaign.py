"""On the lent GPU machine: one background campaign per lease (now 900 s of device time in all, start-up included),
the steps in order of value, stopped cleanly at its deadline with everything finished already packed.

    python3 -m tools.gpu.campaign plan  --deadline-s 700           # the steps, their estimates, what fits
    python3 -m tools.gpu.campaign start --deadline-s 700 [--compile-cache FILE]   # returns at once (setsid)
    python3 -m tools.gpu.campaign poll  [--wait-s 540]             # progress; every finished file into $OUT

The device machine keeps a process that started its own session running until the machine goes back.
`start` copies the repo to the campaign's home and launches `run` there in a new session; `poll` waits up to
--wait-s (returning early when the run ends), prints the state and puts the packed results into $OUT.

`run` installs each engine once all its parts are staged, then runs the steps (each engine in its own child
process; one engine start serves every scenario of a step):
  1. shared-prefix and multi-turn in-process on vLLM, then on SGLang (H1 under load); SGLang's step also runs
     one profiler window (`--profile`) and its telemetry, and both are validated on record;
  2. HTTP mode on both engines (`concurrent --quick`), and the `vllm bench serve` anchor;
  3. ablations: CUDA graphs and async scheduling (vLLM), radix cache and overlap scheduler (SGLang);
  4. the rest of the in-process matrix at full request counts.
Only step 1 is required; the rest run when their estimate still fits. A step gets at most its cap and what is
left before the deadline; one that runs over gets SIGINT (finished cells are kept), then SIGKILL. After every
step the results are packed (`packed/`), so a deadline never leaves finished work unpacked. Each step records
its engine's start, phase by phase (tools/gpu/start_phases.py). Engine start is cut where it does not change
what the cells measure, and each cut is an engine arg or an environment variable, so it is in the results
(START_CUTS, COMPILE_CACHE_ENV).
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

from tools.gpu.campaign_plan import COMPILE_CACHE_ENV, START_CUTS, CampaignStep, plan
from tools.gpu.device import HOME, engine_home, install, status
from tools.gpu.pack import write_tar_xz
from tools.gpu.step_records import step_records
from tools.gpu.validate import pack_results, run_step

COMPILE_CACHE_OUT_LIMIT = 60 << 20

ROOT = Path(__file__).resolve().parents[2]
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


def engine_env(engine: str, device_home: Path, repo: Path, cache: Path, compile_cache: Path | None = None) -> dict[str, str]:
    from tools.gpu.pack import read_manifest

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ENGINEBENCH_CACHE": str(cache), "VLLM_LOGGING_LEVEL": "INFO",
           "PYTHONPATH": f"{engine_home(engine, device_home) / 'site'}:{repo}"}  # fmt: skip
    if compile_cache is not None:
        env.update({name: str(compile_cache / sub) for name, sub in COMPILE_CACHE_ENV.items()})
    env.update(read_manifest(engine_home(engine, device_home) / "manifest.json").get("env", {}))
    return env


def pack_now(home: Path, state: dict[str, Any]) -> list[str]:
    """Everything written so far, with the state, into home/packed (what `poll` hands out)."""
    results = home / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "campaign-state.json").write_text(json.dumps({**state, "installs": installs(home)}, indent=1))
    packed = home / "packed"
    shutil.rmtree(packed, ignore_errors=True)
    packed.mkdir(parents=True)
    return pack_results(results, packed, "campaign")


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
    compile_cache = home / "compile-cache"
    state["compile_cache"] = {"env": {name: str(compile_cache / sub) for name, sub in COMPILE_CACHE_ENV.items()},
                              "carried_in": (home / "compile-cache-in.json").is_file()}  # fmt: skip
    state["start_cuts"] = {engine: list(START_CUTS.get(engine, ())) for engine in engines}
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
        env = engine_env(planned.engine, device_home, repo, home / "cache", compile_cache)
        folder = results / planned.step.name
        log = folder / f"{planned.step.name}.log"
        entry.update(run_step(planned.step, min(remaining, planned.cap_s), log, env, cwd=repo))
        entry.update(step_records(planned.engine, folder, log))
        write_state(home, state)
        pack_now(home, state)
    state["finished"] = True
    state["wall_s"] = round(time.monotonic() - started, 1)
    state["installs"] = installs(home)
    write_state(home, state)
    state["packed"] = pack_now(home, state)
    return state


def start(deadline_s: float, home: Path, repo: Path = ROOT, compile_cache: Path | None = None) -> int:
    """Copy the repo (the call's copy goes away with the call), unpack a carried compile cache, then launch `run`
    in its own session."""
    if (home / "state.json").is_file() and not read_state(home).get("finished", True):
        print(f"campaign: already running in {home}; poll it")
        return 0
    shutil.rmtree(home / "repo", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(".gpu", ".git", ".venv", "results", "__pycache__", "build", "*.egg-info", ".pytest_cache")
    shutil.copytree(repo, home / "repo", ignore=skip)
    if compile_cache is not None:
        unpack_compile_cache(compile_cache, home)
    argv = [sys.executable, "-m", "tools.gpu.campaign", "run", "--deadline-s", str(deadline_s), "--home", str(home)]
    with (home / "campaign.log").open("a") as log:
        process = subprocess.Popen(argv, cwd=home / "repo", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "PYTHONPATH": str(home / "repo")})  # fmt: skip
    (home / "pid").write_text(str(process.pid))
    print(f"campaign: started pid {process.pid}, deadline {deadline_s:.0f} s; poll with python3 -m tools.gpu.campaign poll")
    return 0


def poll(home: Path, wait_s: float, out: Path, pack_cache: bool = False) -> dict[str, Any]:
    """Wait until the run ends or wait_s passes, then put every result so far into out: what the run packed
    after its last step, or, while a step is still running, a fresh pack."""
    waited = time.monotonic()
    while time.monotonic() - waited < wait_s and not read_state(home).get("finished", False):
        time.sleep(5)
    state = read_state(home)
    out.mkdir(parents=True, exist_ok=True)
    if not state.get("finished") and (home / "results").is_dir():
        pack_now(home, state)
    packed = home / "packed"
    if packed.is_dir():
        shutil.copytree(packed, out, dirs_exist_ok=True)
        state["packed"] = sorted(str(p.relative_to(packed)) for p in packed.rglob("*") if p.is_file())
    if pack_cache:
        state["compile_cache_out"] = pack_compile_cache(home, out)
    return state


def unpack_compile_cache(bundle: Path, home: Path) -> None:
    """A compile-cache.tar.xz from an earlier lease into home/compile-cache, noted for the state."""
    import tarfile

    with tarfile.open(bundle) as tar:
        tar.extractall(home / "compile-cache", filter="data")
    (home / "compile-cache-in.json").write_text(json.dumps({"file": bundle.name, "bytes": bundle.stat().st_size}))


def pack_compile_cache(home: Path, out: Path) -> dict[str, Any]:
    """The compile caches as one .tar.xz in out, for the next lease to carry in; skipped when too large to travel."""
    cache = home / "compile-cache"
    if not cache.is_dir():
        return {"packed": False, "why": "no compile cache written"}
    bundle = out / "compile-cache.tar.xz"
    try:
        write_tar_xz(cache, bundle, preset=6)
    except ValueError as exc:  # e.g. a symbolic link in a cache
        return {"packed": False, "why": str(exc)}
    size = bundle.stat().st_size
    if size > COMPILE_CACHE_OUT_LIMIT:
        bundle.unlink()
        return {"packed": False, "why": f"{size / 2**20:.0f} MiB packed, over the {COMPILE_CACHE_OUT_LIMIT >> 20} MiB a call carries"}
    return {"packed": True, "file": bundle.name, "bytes": size}


def progress_lines(state: dict[str, Any], home: Path) -> list[str]:
    lines = [f"campaign: finished={state.get('finished')} deadline {state.get('deadline_s')} s"]
    for engine, done in installs(home).items():
        lines.append(f"  install {engine}: ok={done.get('ok')} {done.get('wall_s', '')} s {done.get('error', '')}")
    for entry in state.get("steps", []):
        lines.append(f"  {entry['step']:24} {entry['outcome']}  rc={entry.get('returncode')} wall={entry.get('wall_s')}")
        if entry.get("start_phases"):
            lines.append(f"    start phases: {entry['start_phases']}")
        if entry.get("checks"):
            lines.append(f"    checks: {entry['checks']}")
        log = home / "results" / entry["step"] / f"{entry['step']}.log"
        if entry["outcome"] == "running" and log.is_file():
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(("cell ", "== "))]
            lines += [f"    {line}" for line in tail[-6:]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=("plan", "start", "run", "poll"))
    parser.add_argument("--deadline-s", type=float, default=700.0,
                        help="seconds the run may take from its start (a 900 s lease: what is left after staging, "
                             "less ~60 s for the last poll)")  # fmt: skip
    parser.add_argument("--compile-cache", type=Path, help="start: a compile-cache.tar.xz from an earlier lease")
    parser.add_argument("--pack-cache", action="store_true", help="poll: also pack the compile caches into $OUT")
    parser.add_argument("--wait-s", type=float, default=0.0, help="poll: wait this long unless the run ends first")
    parser.add_argument("--home", type=Path, default=home_dir())
    args = parser.parse_args(argv)
    if args.verb == "plan":
        total = 0
        for planned in plan(args.home / "results"):
            total += planned.step.estimate_s
            fits = "fits" if total <= args.deadline_s else "past the deadline"
            print(f"{planned.step.name:24} ~{planned.step.estimate_s:4d} s (cap {planned.cap_s} s, cumulative {total} s, {fits})"
                  f"{' optional' if planned.step.optional else ''}: {' '.join(planned.step.argv[1:])}")  # fmt: skip
        return 0
    if args.verb == "start":
        return start(args.deadline_s, args.home, compile_cache=args.compile_cache)
    if args.verb == "run":
        run(args.deadline_s, args.home)
        return 0
    state = poll(args.home, args.wait_s, Path(os.environ.get("OUT", "/tmp/enginebench-gpu/out")), args.pack_cache)
    print("\n".join(progress_lines(state, args.home)))
    print(f"campaign: packed {', '.join(state.get('packed', [])) or 'nothing yet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
