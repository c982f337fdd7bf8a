"""The report's "Where host time goes": per profiled cell, every engine's processes side by side with their
phase shares (and sampling error), a flame graph per process, and host ms per engine step beside the step's
tokens where the cell has step telemetry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compare.analysis.phases import phase_names
from compare.report.flame import flame_svg


def host_ms_per_step(process: dict[str, Any], cell: dict[str, Any]) -> dict[str, float] | None:
    """The busy host time of the engine's scheduling process per engine step in the window (telemetry rows)."""
    rows = (cell.get("telemetry") or {}).get("rows") or []
    steps = [r for r in rows if "new_tokens" in r]  # engine-step rows (vLLM's stat loggers); polled rows have none
    if not steps or process.get("busy_share") is None:
        return None
    tokens = [(r.get("new_tokens") or 0) + (r.get("prompt_tokens_done") or 0) for r in steps]
    busy_ms = process["busy_share"] * process["wall_s"] * 1e3
    return {"steps": len(steps), "host_ms_per_step": busy_ms / len(steps), "tokens_per_step": sum(tokens) / len(steps)}


def _flame(run, cell_id: str, process: dict[str, Any], profile: dict[str, Any], out: Path, name: str) -> str | None:
    source = Path(run.path).parent / profile.get("folder", "") / process.get("profile_file", "")
    if not source.is_file():
        return None
    target = (
        out / "flames" / f"{name}-{cell_id}-{process['role']}-{process['pid']}.svg".replace(" ", "_").replace("/", "_")
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        flame_svg(
            json.loads(source.read_text()),
            process.get("main_thread"),
            f"{name} {cell_id} {process['role']} (pid {process['pid']})",
        )
    )
    return str(target.relative_to(out))


def anatomy_section(runs: list, names: dict[int, str], out: Path) -> list[str]:
    phases = phase_names()
    rows, flames, steps = [], [], []
    for run in runs:
        for cell in run.doc.get("cells", []):
            profile = cell.get("host_profile")
            if not profile:
                continue
            for process in profile["processes"]:
                where = f"{names[id(run)]} | {cell['cell_id']} | {process['role']} ({process['pid']})"
                if process.get("error"):
                    rows.append(f"| {where} | not sampled: {process['error'][:80]} | - |" + " - |" * len(phases))
                    continue
                cpu = process.get("cpu_share")
                cells = [
                    f"{100 * process['phases'][p]['share']:.0f} ± {100 * process['phases'][p]['ci95']:.0f}"
                    for p in phases
                ]
                rows.append(
                    f"| {where} | {process['samples']} | {'-' if cpu is None else f'{cpu:.2f}'} | "
                    + " | ".join(cells)
                    + " |"
                )
                flame = _flame(run, cell["cell_id"], process, profile, out, names[id(run)])
                if flame:
                    flames.append(f"- [{where.replace(' | ', ' / ')}]({flame})")
                per_step = host_ms_per_step(process, cell) if process["role"] in ("engine_core", "scheduler") else None
                if per_step:
                    steps.append(
                        f"| {where} | {per_step['steps']} | {per_step['host_ms_per_step']:.2f} | "
                        f"{per_step['tokens_per_step']:.1f} |"
                    )
    if not rows:
        return []
    lines = [
        "## Where host time goes",
        "",
        "py-spy on every process that served the cell, over its measured part only. Shares are % of the main "
        "thread's wall time, ± the binomial 95% interval of the samples; CPU is the whole process's CPU time "
        "over the window, in cores (/proc). Phases: docs/anatomy.md.",
        "",
        "| engine | cell | process | samples | CPU | " + " | ".join(phases) + " |",
        "|---|---|---|---|---|" + "---|" * len(phases),
    ]
    lines += rows + [""]
    if steps:
        lines += [
            "Host time of the scheduling process per engine step (its busy share x window / steps):",
            "",
            "| engine | cell | process | steps | host ms / step | tokens / step |",
            "|---|---|---|---|---|---|",
            *steps,
            "",
        ]
    if flames:
        lines += ["Flame graphs (SVG, colour = phase):", "", *flames, ""]
    return lines
