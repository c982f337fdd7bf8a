"""Sweeps: the runs of a run's points (compare/run/points/points.py: `--sweep KEY=V1,V2` grids and named `--ablation`
sets), and their manifest and ablation table.

Points (of a sweep, an ablation set, or engines to keep apart) run one at a time, each isolated: with
isolation each point is `python -m compare` in its own child process and session (compare/run/points/isolate.py)
writing its own results files; without it, each point runs in this process. Either way one point's failure
is recorded (status, reason, log tail) and the next point runs. A sweep lives in one folder with a manifest,
`sweep.json`, rewritten atomically after every point, and ends with the ablation table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compare.analysis.ablation_table import (
    ablation_lines,
    ablation_markdown,
    ablation_rows,
    agreement_lines,
    agreement_rows,
)
from compare.analysis.pairs import compare_pairs, comparison_lines
from compare.analysis.speculative import acceptance_lines, acceptance_markdown, acceptance_rows
from compare.results.store import load_run, write_json_atomic
from compare.run.config import RunConfig
from compare.run.points.isolate import ChildOutcome, child_echo, run_child
from compare.run.orchestrate import run_point
from compare.run.points.points import Point, points_for
from engines import REGISTRY


MANIFEST = "sweep.json"
GPU_ENGINES = {"vllm", "vllm-batch", "sglang"}


def run_command(config: RunConfig) -> int:
    """The whole command: one point in this process, or several points (sweep, ablation, isolation) in turn."""
    points, question = points_for(config.engines, config.sweeps, config.ablation, config.mode)
    sweep_name = config.ablation or ("sweep" if config.sweeps else None)
    if config.repeat_baseline and sweep_name:
        points.append(dataclasses.replace(points[0], label=f"{points[0].label} (A/A)"))
    if config.isolate is None:  # default: on for sweeps, for SGLang, and for GPU engines next to other engines
        gpu = {p.engine for p in points} & GPU_ENGINES
        isolate = bool(sweep_name) or "sglang" in gpu or bool(gpu and len(points) > 1)
    else:
        isolate = config.isolate
    if not sweep_name and not isolate:
        return asyncio.run(run_point(config))
    return run_points(config, points, question, isolate, sweep_name)


def sweep_folder(config: RunConfig, name: str) -> Path:
    if config.resume is not None:
        return config.resume
    return config.out_dir / f"sweep_{name}_{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def point_config(config: RunConfig, point: Point, out_dir: Path) -> RunConfig:
    return dataclasses.replace(
        config,
        engines=(point.engine,),
        engine_args=config.engine_args + point.engine_args,
        request_args=config.request_args + point.request_args,
        mode=point.mode,
        out_dir=out_dir,
        sweeps=(),
        ablation=None,
        isolate=False,
        resume=out_dir if config.resume is not None else None,
    )


def child_argv(config: RunConfig, point: Point, out_dir: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "compare",
        *own_engine_args(config.child_args, point.engine),
        "--engine",
        point.engine,
        "--mode",
        point.mode,
        "--out",
        str(out_dir),
        "--no-isolate",
        "--no-progress",
    ]
    given = config.child_args
    if not any(a.startswith(("--scenario", "--trace")) for a in given):  # the ablation set's own scenario (or smoke)
        argv += ["--scenario", *(s.name for s in config.scenarios)]
    for pair in point.engine_args:
        argv += ["--engine-arg", pair]
    for pair in point.request_args:
        argv += ["--request-arg", pair]
    if config.resume is not None:
        argv += ["--resume", str(out_dir)]
    return argv


def own_engine_args(args: tuple[str, ...], engine: str) -> list[str]:
    """The run's argv for one point's child: `--engine-arg OTHER.k=v` (and `--request-arg`) for another engine of the
    run is left out (the child runs one engine, and refuses a prefix naming an engine it does not have)."""
    kept, index = [], 0
    while index < len(args):
        arg = args[index]
        if arg in ("--engine-arg", "--request-arg") and index + 1 < len(args):
            pair, width = args[index + 1], 2
        elif arg.startswith(("--engine-arg=", "--request-arg=")):
            pair, width = arg.split("=", 1)[1], 1
        else:
            kept.append(arg)
            index += 1
            continue
        scope, dot, _ = pair.partition("=")[0].partition(".")
        if not (dot and scope in REGISTRY and scope not in (engine, "http")):
            kept += args[index : index + width]
        index += width
    return kept


def run_points(config: RunConfig, points: list[Point], question: str, isolate: bool, name: str | None) -> int:
    """`name`: the sweep's name (a folder and a manifest); None: plain engines, written to --out as usual."""
    root = sweep_folder(config, name) if name else (config.resume or config.out_dir)
    manifest_path = root / MANIFEST
    previous = _previous_entries(manifest_path) if config.resume is not None else {}
    manifest = {
        "schema_version": 1,
        "name": name,
        "question": question,
        "isolated": isolate,
        "baseline": points[0].label,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "points": [],
    }
    print(
        f"== {len(points)} point(s){' in ' + str(root) if name else ''}: {question or 'each engine on its own'}",
        flush=True,
    )
    try:
        for index, point in enumerate(points):
            out_dir = root / f"{index:02d}-{point.slug}" if name else root
            entry = {**point.to_json(), "dir": str(out_dir)}
            done = previous.get(point.slug)
            if done and done.get("status") == "complete":
                print(
                    f"-- point {index + 1}/{len(points)} {point.label}: complete in {out_dir}, skipped (--resume)",
                    flush=True,
                )
                manifest["points"].append(done)
                continue
            print(f"-- point {index + 1}/{len(points)}: {point.run_name} {point.label}", flush=True)
            started, started_wall = time.monotonic(), time.time()
            if isolate:
                outcome = run_child(
                    child_argv(config, point, out_dir),
                    out_dir / "logs" / f"{point.slug}.log",
                    config.deadline_s,
                    child_echo(point.label),
                )
            else:
                outcome = _in_process(point_config(config, point, out_dir), started)
            entry.update(outcome.to_json(), files=_files(out_dir, point, started_wall))
            manifest["points"].append(entry)
            print(
                f"-- point {point.label}: {outcome.status} ({outcome.reason}), {outcome.elapsed_s:.0f} s"
                + _gpu_line(outcome.gpu_memory),
                flush=True,
            )
            if name:
                write_json_atomic(manifest_path, manifest)
    except KeyboardInterrupt:
        if name:
            manifest["points"].append({**point.to_json(), "status": "interrupted", "reason": "SIGINT"})
            write_json_atomic(manifest_path, manifest)
        print(f"interrupted: finished points and cells are on disk; continue with --resume {root}", file=sys.stderr)
        return 130
    runs = _load_runs(manifest["points"])
    if name:
        _write_table(manifest, root, points, runs)
        write_json_atomic(manifest_path, manifest)
    for pair_name, comparison in compare_pairs([run for point_runs in runs for run in point_runs]):
        for line in comparison_lines(pair_name, comparison):  # HTTP overhead, streaming fidelity: as one process prints
            print(line, flush=True)
    return _exit_code([p["status"] for p in manifest["points"]])


def _in_process(config: RunConfig, started: float) -> ChildOutcome:
    try:
        code = asyncio.run(run_point(config))
        reason = "exit 0" if code == 0 else f"exit {code}"
    except Exception as exc:  # a usage error in one point (e.g. a bad engine arg value) fails that point only
        code, reason = 2, f"{type(exc).__name__}: {exc}"
    status = {0: "complete", 2: "bad-input"}.get(code, "failed")
    return ChildOutcome(
        status,
        reason,
        code,
        round(time.monotonic() - started, 3),
        "(in this process)",
        gpu_memory={"checked": False, "why": "not isolated"},
    )


def _files(out_dir: Path, point: Point, since_wall: float) -> list[str]:
    """The point's results files written (or continued) since it started."""
    files = out_dir.glob(f"{point.run_name.replace(':', '_').replace('/', '_')}_*.json")
    return sorted(str(p) for p in files if p.stat().st_mtime >= since_wall - 1)


def _previous_entries(manifest_path: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {Point(p["label"], p["engine"], tuple(p["engine_args"]), p["mode"]).slug: p for p in doc.get("points", [])}


def _gpu_line(gpu: dict[str, Any]) -> str:
    if not gpu.get("checked"):
        return ""
    return "; GPU memory released" if gpu.get("released") else f"; GPU memory NOT released: {gpu.get('after_mib')} MiB"


def _load_runs(entries: list[dict[str, Any]]) -> list[list[Any]]:
    """Per manifest entry, its readable results files, each loaded once, in file order."""
    runs: list[list[Any]] = []
    for entry in entries:
        runs.append([])
        for path in entry.get("files") or []:
            try:
                runs[-1].append(load_run(Path(path)))
            except (OSError, ValueError):
                continue
    return runs


def _write_table(manifest: dict[str, Any], root: Path, points: list[Point], runs: list[list[Any]]) -> None:
    """Each point's newest complete file per scenario, against the baseline point's."""
    by_point = {
        entry["label"]: {run.doc["scenario"]["name"]: run for run in point_runs if run.doc.get("status") == "complete"}
        for entry, point_runs in zip(manifest["points"], runs)
    }
    baseline = points[0].label
    others = {label: by_scenario for label, by_scenario in by_point.items() if label != baseline}
    again = f"{baseline} (A/A)"
    rows = ablation_rows(by_point.get(baseline, {}), others, aa_label=again if again in by_point else None)
    agreement = agreement_rows(by_point.get(baseline, {}), others)
    acceptance = acceptance_rows(by_point)
    for line in ablation_lines(rows, baseline) + agreement_lines(agreement) + acceptance_lines(acceptance):
        print(line, flush=True)
    markdown = ablation_markdown(rows, baseline, manifest["question"], agreement)
    (root / "ablation.md").write_text(markdown + "\n".join(acceptance_markdown(acceptance)), encoding="utf-8")
    manifest["ablation_table"] = [row.to_json() for row in rows]
    manifest["output_agreement"] = agreement
    if acceptance:
        manifest["speculative"] = acceptance
    print(f"ablation table: {root / 'ablation.md'}", flush=True)


def _exit_code(statuses: list[str]) -> int:
    if all(s == "complete" for s in statuses):
        return 0
    return 2 if "bad-input" in statuses and all(s in ("complete", "bad-input") for s in statuses) else 1
