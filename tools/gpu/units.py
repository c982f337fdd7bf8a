"""Running the campaign's units: one step, or a group whose engines start at once and are measured in turn.

A group's members each launch as soon as their engine is installed (SGLang's parts come first, so it starts
first), run `python -m compare ... --start-barrier DIR`, and wait there once their engine is up. When every
member is up (or has exited), the campaign releases them one at a time in plan order (compare/run/together.py),
each for at most its cap and what is left of the deadline. Whatever a step started, in any session, is killed
when the step ends (tools/gpu/proctree.py).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from compare.run.isolate import interruptible
from compare.run.together import gpu_processes, release
from tools.gpu.campaign_plan import CampaignStep
from tools.gpu.proctree import MARK, kill_marked
from tools.gpu.step_records import step_records
from tools.gpu.validate import finish, run_step

POLL_S = 0.5
START_LIMIT = 1.6  # x a member's start estimate: past it, a member not yet up is stopped and the others go on


@dataclass
class UnitContext:
    results: Path
    deadline_at: float  # time.monotonic() when the campaign's deadline passes
    env_for: Callable[[str], dict[str, str]]  # engine -> its environment (site-packages, caches)
    installed: Callable[[str], dict[str, Any] | None]  # engine -> its install outcome, None while installing
    cwd: Path
    save: Callable[[], None]  # write the state file
    started_at: float = 0.0  # time.monotonic() when the campaign started

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()


def barrier_of(step: CampaignStep) -> tuple[Path, str]:
    """The step's barrier folder and the label its engine arrives with (the run's name: X or X-http)."""
    argv = list(step.step.argv)
    mode = argv[argv.index("--mode") + 1] if "--mode" in argv else "inprocess"
    engine = argv[argv.index("--engine") + 1]
    return Path(argv[argv.index("--start-barrier") + 1]), f"{engine}-http" if mode == "http" else engine


def run_single(planned: CampaignStep, entry: dict[str, Any], ctx: UnitContext) -> None:
    install = _wait_install(planned.engine, ctx)
    if not install.get("ok"):
        entry["outcome"] = f"skipped: {planned.engine} is not installed: {install.get('error', 'imports failed')}"
        return
    entry.update(outcome="running", started_s=_now(ctx))
    ctx.save()
    folder, log = _folder(planned, ctx)
    entry.update(run_step(planned.step, min(ctx.remaining(), planned.cap_s), log, ctx.env_for(planned.engine), ctx.cwd))
    entry.update(step_records(planned.engine, folder, log))


def run_group(unit: list[CampaignStep], entries: list[dict[str, Any]], ctx: UnitContext) -> None:
    folder, _ = barrier_of(unit[0])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*"):
        stale.unlink()
    launched: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    pending = list(range(len(unit)))
    while pending and ctx.remaining() > 0:  # launch each member once its engine is installed
        for index in list(pending):
            install = ctx.installed(unit[index].engine)
            if install is None:
                continue
            pending.remove(index)
            if not install.get("ok"):
                entries[index]["outcome"] = f"skipped: {unit[index].engine} is not installed: {install.get('error', 'imports failed')}"
                continue
            launched[unit[index].step.name] = _launch(unit[index], ctx)
            entries[index].update(outcome="starting (together)", started_s=_now(ctx))
        ctx.save()
        if pending:
            time.sleep(POLL_S)
    for index in pending:
        entries[index]["outcome"] = "skipped: install did not finish before the deadline"
    while ctx.remaining() > 0 and not all(_up_or_gone(folder, unit, launched, i) for i in range(len(unit))):
        for planned in unit:  # one engine's stuck start must not hold the others back past their turn
            if planned.step.name in launched and not _up_or_gone(folder, unit, launched, unit.index(planned)) \
                    and time.monotonic() - launched[planned.step.name][2] > START_LIMIT * (planned.step.estimate_s - planned.run_s):
                finish(launched[planned.step.name][0], 0, planned.step.name)
                entries[unit.index(planned)]["start_limit_exceeded"] = True
        time.sleep(POLL_S)
    for index, planned in enumerate(unit):
        if planned.step.name in launched:
            _measure_in_turn(planned, entries[index], launched, unit, ctx)
            ctx.save()


def _measure_in_turn(planned: CampaignStep, entry: dict[str, Any], launched: dict, unit: list[CampaignStep], ctx: UnitContext) -> None:
    process, handle, launched_at = launched[planned.step.name]
    folder, label = barrier_of(planned)
    ready = (folder / f"{label}.ready").is_file()
    entry["ready_after_s"] = round(_ready_time(folder, label) - launched_at, 1) if ready else None
    if process.poll() is None and ready:
        waiting = [barrier_of(o)[1] for o in unit if o is not planned and o.step.name in launched and launched[o.step.name][0].poll() is None]
        release(folder, label, {"engines": waiting, "gpu_processes": gpu_processes()})
        entry.update(outcome="running (released)", released_s=_now(ctx))
        ctx.save()
        started = time.monotonic()
        entry["outcome"] = finish(process, min(ctx.remaining(), planned.cap_s), planned.step.name)
        entry["measured_s"] = round(time.monotonic() - started, 1)
    elif process.poll() is None:  # never came up before the deadline
        entry["outcome"] = "out of budget: the engine was not up at the deadline"
        finish(process, 0, planned.step.name)
    elif entry.get("start_limit_exceeded"):
        entry["outcome"] = f"stopped: not up within {START_LIMIT} x its start estimate"
    else:
        entry["outcome"] = "done" if process.returncode == 0 else f"exited before its turn (rc {process.returncode})"
    handle.close()
    entry.update(returncode=process.returncode, wall_s=round(time.monotonic() - launched_at, 1),
                 leftover_processes_killed=len(kill_marked(planned.step.name)), argv=list(planned.step.argv))  # fmt: skip
    step_folder, log = _folder(planned, ctx)
    entry.update(step_records(planned.engine, step_folder, log))


def _launch(planned: CampaignStep, ctx: UnitContext) -> tuple[subprocess.Popen, Any, float]:
    _, log = _folder(planned, ctx)
    handle = log.open("w")
    env = {**ctx.env_for(planned.engine), MARK: planned.step.name}
    process = subprocess.Popen(planned.step.argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ctx.cwd,
                               start_new_session=True, preexec_fn=interruptible)  # fmt: skip
    return process, handle, time.monotonic()


def _up_or_gone(folder: Path, unit: list[CampaignStep], launched: dict, index: int) -> bool:
    planned = unit[index]
    if planned.step.name not in launched:
        return True
    process = launched[planned.step.name][0]
    return process.poll() is not None or (folder / f"{barrier_of(planned)[1]}.ready").is_file()


def _ready_time(folder: Path, label: str) -> float:
    """When the ready file was written, on time.monotonic()'s clock."""
    age = time.time() - (folder / f"{label}.ready").stat().st_mtime
    return time.monotonic() - age


def _wait_install(engine: str, ctx: UnitContext) -> dict[str, Any]:
    while ctx.remaining() > 0:
        install = ctx.installed(engine)
        if install is not None:
            return install
        time.sleep(POLL_S)
    return {"ok": False, "error": "install did not finish before the deadline"}


def _folder(planned: CampaignStep, ctx: UnitContext) -> tuple[Path, Path]:
    folder = ctx.results / planned.step.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder, folder / f"{planned.step.name}.log"


def _now(ctx: UnitContext) -> float:
    return round(time.monotonic() - ctx.started_at, 1)
