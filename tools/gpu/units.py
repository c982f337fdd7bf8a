"""Running the campaign's units: one step, or a group whose engines start at once and are measured in turn.

A group's members each launch as soon as their engine is installed (SGLang's parts come first, so it starts
first), run `python -m compare ... --start-barrier DIR`, and wait there once their engine is up. When every
member is up (or has exited), the campaign releases them one at a time in plan order (compare/run/points/together.py),
each for at most its cap and what is left of the deadline. Whatever a step started, in any session, is killed
when the step ends (tools/gpu/proctree.py).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from compare.run.points.together import gpu_processes, release
from tools.gpu.campaign_plan import CampaignStep
from tools.gpu.proctree import kill_marked
from tools.gpu.step_records import step_records
from tools.gpu.validate import finish, launch_step, run_step

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


@dataclass
class Member:
    """A launched group member: its step, process, log handle and when it was launched (time.monotonic())."""

    planned: CampaignStep
    entry: dict[str, Any]
    process: subprocess.Popen
    log: Any
    launched_at: float
    stopped_at_start: bool = False

    @property
    def ready(self) -> bool:
        return (self.planned.barrier / f"{self.planned.label}.ready").is_file()

    def up_or_gone(self) -> bool:
        return self.process.poll() is not None or self.ready


def run_group(unit: list[CampaignStep], entries: list[dict[str, Any]], ctx: UnitContext) -> None:
    folder = unit[0].barrier
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*"):
        stale.unlink()
    members = _launch_when_installed(unit, entries, ctx)
    while ctx.remaining() > 0 and not all(m.up_or_gone() for m in members):
        for member in members:  # one engine's stuck start must not hold the others back past their turn
            if not member.up_or_gone() and time.monotonic() - member.launched_at > START_LIMIT * member.planned.start_s:
                finish(member.process, 0, member.planned.step.name)
                member.stopped_at_start = True
        time.sleep(POLL_S)
    for member in members:
        _measure_in_turn(member, members, ctx)
        ctx.save()


def _launch_when_installed(unit: list[CampaignStep], entries: list[dict[str, Any]], ctx: UnitContext) -> list[Member]:
    """Each member launches as soon as its engine is installed; one whose install failed is skipped on record."""
    members, pending = [], dict(zip(range(len(unit)), unit))
    while pending and ctx.remaining() > 0:
        for index, planned in list(pending.items()):
            install = ctx.installed(planned.engine)
            if install is None:
                continue
            del pending[index]
            if not install.get("ok"):
                entries[index]["outcome"] = (
                    f"skipped: {planned.engine} is not installed: {install.get('error', 'imports failed')}"
                )
                continue
            _, log = _folder(planned, ctx)
            handle = log.open("w")
            members.append(
                Member(
                    planned,
                    entries[index],
                    launch_step(planned.step, handle, ctx.env_for(planned.engine), ctx.cwd),
                    handle,
                    time.monotonic(),
                )
            )
            entries[index].update(outcome="starting (together)", started_s=_now(ctx))
        ctx.save()
        if pending:
            time.sleep(POLL_S)
    for index in pending:
        entries[index]["outcome"] = "skipped: install did not finish before the deadline"
    return sorted(members, key=lambda m: unit.index(m.planned))  # released in plan order


def _measure_in_turn(member: Member, members: list[Member], ctx: UnitContext) -> None:
    planned, entry, process = member.planned, member.entry, member.process
    ready = member.ready
    entry["ready_after_s"] = round(_ready_time(planned) - member.launched_at, 1) if ready else None
    if process.poll() is None and ready:
        waiting = [m.planned.label for m in members if m is not member and m.process.poll() is None]
        release(planned.barrier, planned.label, {"engines": waiting, "gpu_processes": gpu_processes()})
        entry.update(outcome="running (released)", released_s=_now(ctx))
        ctx.save()
        started = time.monotonic()
        entry["outcome"] = finish(process, min(ctx.remaining(), planned.cap_s), planned.step.name)
        entry["measured_s"] = round(time.monotonic() - started, 1)
    elif process.poll() is None:  # never came up before the deadline
        entry["outcome"] = "out of budget: the engine was not up at the deadline"
        finish(process, 0, planned.step.name)
    elif member.stopped_at_start:
        entry["outcome"] = f"stopped: not up within {START_LIMIT} x its start estimate"
    else:
        entry["outcome"] = "done" if process.returncode == 0 else f"exited before its turn (rc {process.returncode})"
    member.log.close()
    entry.update(
        returncode=process.returncode,
        wall_s=round(time.monotonic() - member.launched_at, 1),
        leftover_processes_killed=len(kill_marked(planned.step.name)),
        argv=list(planned.step.argv),
    )
    step_folder, log = _folder(planned, ctx)
    entry.update(step_records(planned.engine, step_folder, log))


def _ready_time(planned: CampaignStep) -> float:
    """When the member's ready file was written, on time.monotonic()'s clock."""
    age = time.time() - (planned.barrier / f"{planned.label}.ready").stat().st_mtime
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
