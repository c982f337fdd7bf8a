"""One (engine, scenario) run: start the engine, run every cell, write results after each cell."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from compare.analysis.cellstats import joules_per_token
from compare.analysis.early_stop import stop_text
from compare.analysis.cell import derive_cell
from compare.analysis.stepcost import step_cost_document, step_cost_line
from compare.analysis.structured import add_deltas, check_records, delta_text
from compare.results.store import ResultsFile, results_path
from compare.run.instruments import environment
from compare.run.instruments.cellwindow import CellWindow, Instruments
from compare.run.enginelog import harness_err
from compare.run.instruments.gpu import GpuSampler
from compare.run.instruments.observe import CellObserver
from compare.run.points.resume import continue_file, kept_cell_ids
from compare.run.openloop import precise_sends
from compare.run.runner import CellRun, run_cell
from engines.base import Engine
from workloads.models import ResolvedModel
from workloads.plan import CellPlan
from workloads.scenarios import Scenario


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    quick: bool = False
    gpu_interval_ms: float = 50.0
    show_progress: bool = True
    slo: dict[str, float] | None = None  # latency limits for goodput (compare/analysis/slo.py)
    profile: str | None = None  # a cell id to run under the engine's profiler ("": the first cell)
    host_profile: str | None = None  # a cell id, or "all": py-spy on the processes serving it
    host_profile_rate: int = 100


def cell_config(scenario: Scenario, plan: CellPlan) -> dict[str, Any]:
    spec = plan.spec
    return {
        "concurrency": spec.concurrency,
        "input_tokens": spec.input_tokens,
        "prompt_tokens": plan.target_prompt_tokens,
        "shared_prefix_tokens": scenario.shared_prefix_tokens,
        "output_tokens": scenario.output_lengths.to_json(),
        "num_requests": spec.num_requests,
        "warmup_requests": len(plan.warmups),
        "language": spec.language,
        "kind": spec.kind,
        "prompt_mode": scenario.prompt_mode,
        "ignore_eos": scenario.ignore_eos,
        "timeout_s": scenario.timeout_s,
        "inexact_text_prompts": plan.num_inexact_text_prompts,
        "prompts_sha256": prompts_sha256(plan),
        "chat_template": plan.chat,  # the template around every prompt (head and tail), or null: raw prompts
        "request_rate": None
        if spec.request_rate is None
        else "inf"
        if math.isinf(spec.request_rate)
        else spec.request_rate,
        "burstiness": scenario.burstiness if spec.request_rate is not None else None,
        # open loop: how each send waits for its due time (compare/run/openloop.py sleep_until)
        "send_wait": ("timer + yield-spin" if precise_sends(plan.arrivals_ns) else "timer")
        if plan.arrivals_ns
        else None,
        **({"traffic": plan.traffic} if plan.traffic else {}),
        **({"structured": {"mode": spec.structured, "kind": scenario.structured_kind}} if spec.structured else {}),
        **({"step_shape": True} if scenario.step_shapes else {}),
    }


def prompts_sha256(plan: CellPlan) -> str:
    """One hash of every measured prompt's token ids, in order: two runs with equal hashes sent the same requests."""
    digest = hashlib.sha256()
    for request in plan.requests:
        digest.update(json.dumps(request.prompt_token_ids).encode())
    return digest.hexdigest()


def cell_document(
    scenario: Scenario,
    cell: CellRun,
    capabilities: dict[str, Any],
    gpu: dict[str, Any],
    observed: dict[str, Any] | None = None,
    slo: dict[str, float] | None = None,
    start_together: dict[str, Any] | None = None,
    request_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A cell's document: what it recorded (config, records, cache resets, GPU samples, what was watched around it),
    then everything derived from that by the one builder that --recompute uses too (compare/analysis/cell.py)."""
    records = cell.finished_records()
    check_records(records, cell.plan.warmups + cell.plan.requests)
    document = {
        "cell_id": cell.plan.spec.cell_id,
        "config": {
            **cell_config(scenario, cell.plan),
            **({"request_args": request_args} if request_args is not None else {}),
        },
        "complete": cell.complete,
        "cache_resets": cell.cache_resets,
        "warmups": [w for w in cell.warmups if w is not None],
        "requests": records,
        "gpu": gpu,
        **({"client_workers": cell.client_workers} if cell.client_workers is not None else {}),
        **({"admission": cell.admission} if cell.admission is not None else {}),
        **({"stop": cell.stop} if cell.stop is not None else {}),
        **(observed or {}),
    }
    return {**document, **derive_cell(document, capabilities, slo, start_together)}


@dataclass
class EngineRun:
    """One engine to drive, and what it is a variant of (results.py: `variant`)."""

    name: str
    engine: Engine
    variant: dict[str, Any]
    start_s: float | None = None  # wall seconds engine.start() took (weights, compile, graphs, KV cache, server)
    start_together: dict[str, Any] | None = None  # --start-barrier: what it waited, who else held the GPU


@dataclass(frozen=True)
class CellContext:
    """What every cell of one scenario run shares: the engine's run, where results go, how progress shows."""

    run: EngineRun
    scenario: Scenario
    description: dict[str, Any]  # engine.describe() as stored, with the request args every request carried
    results: ResultsFile
    decode: Any  # token ids -> text, where the scenario reads outputs (language pairs, structured); else None
    options: RunOptions
    progress: Progress
    console: Console
    clients: Any  # a started client pool, or None: the harness process sends
    instruments: Instruments


async def run_scenario(
    run: EngineRun,
    model: ResolvedModel,
    scenario: Scenario,
    plans: list[CellPlan],
    tokenizer,
    options: RunOptions,
    console: Console,
    previous: tuple[Path, dict[str, Any]] | None = None,
    clients=None,
) -> ResultsFile:
    """Run every cell of one scenario on a started engine; the file is rewritten after each cell.
    `run`: the engine, its name, what it is a variant of (results.py) and how it started, so stored runs pair later.
    `previous`: a partial file of this same run (--resume): its complete cells are kept, the rest run.
    `clients`: a started client pool (compare/run/clients/clientprocs.py, rayclients.py) that sends the measured
    requests."""
    engine = run.engine
    description = dataclasses.asdict(engine.describe())
    description["request_args"] = request_args_record(engine)
    instruments = Instruments.probe()
    if previous is not None:
        results = continue_file(*previous)
    else:
        results = ResultsFile(
            results_path(options.out_dir, run.name, scenario.name),
            {
                "metadata": environment.collect(),
                "engine": description,
                "run_name": run.name,
                "model": model.to_json(),
                "scenario": scenario.to_json(),
                "quick": options.quick,
                "variant": run.variant,
                # the KV cache as the engine sized it (None: unknown)
                "kv_capacity_tokens": engine.kv_capacity_tokens(),
                "clients": clients_header(clients),
                "engine_start_s": run.start_s,  # this run's engine.start(), wall seconds (None: not timed)
                "start_together": run.start_together,  # --start-barrier: started beside other engines, then released
                "instruments": instruments.header(),  # energy counters and NVTX ranges: what this machine has
            },
        )
    kept, todo = kept_cell_ids(results), plans
    if kept:  # a kept cell whose prompts differ is run again
        todo = [plan for plan in plans if kept.get(plan.spec.cell_id) != prompts_sha256(plan)]
        rerun = {plan.spec.cell_id for plan in todo}
        results.doc["cells"] = [c for c in results.doc["cells"] if c["cell_id"] not in rerun]
        console.print(
            f"resume: {len(plans) - len(todo)} cell(s) kept from {results.path}, {len(todo)} to run",
            highlight=False,
            markup=False,
        )
    results.write()
    decode = _decoder(tokenizer) if scenario.prompt_mode == "language-pairs" or scenario.structured else None
    try:
        with _progress(console, options.show_progress) as progress:
            context = CellContext(
                run, scenario, description, results, decode, options, progress, console, clients, instruments
            )
            for plan in todo:
                await _measure_cell(context, plan)
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
        try:
            results.finish(
                "interrupted" if interrupted else "failed", None if interrupted else f"{type(exc).__name__}: {exc}"
            )
        except OSError as write_error:  # e.g. disk full: the last complete write stays on disk
            print(
                f"error: could not mark {results.path} {'interrupted' if interrupted else 'failed'}: {write_error}",
                file=harness_err(),
            )
        raise
    if kept:  # kept cells first, then the ones run now: back into the plan's order
        order = {plan.spec.cell_id: index for index, plan in enumerate(plans)}
        results.doc["cells"].sort(key=lambda c: order[c["cell_id"]])
    step_cost = step_cost_document(results.doc["cells"])
    if step_cost is not None:  # batch-shape cells: the fit over all of them (compare/analysis/stepcost.py)
        results.doc["step_cost"] = step_cost
        console.print(step_cost_line(step_cost), highlight=False, markup=False)
    results.finish("complete")
    return results


def request_args_record(engine) -> dict[str, Any]:
    """The request args every request carried, under the engine's names, and what the engine read back where it
    can (vLLM's SamplingParams); {} for the defaults (greedy, one sequence, no logprobs, no stop)."""
    if not engine.request_args:
        return {}
    effective = engine.effective_request_args()
    return {"passed": dict(engine.request_args), **({"effective": effective} if effective is not None else {})}


def clients_header(clients) -> dict[str, Any]:
    """Who sent the requests: this process, or a pool of client workers (with where each one runs)."""
    if clients is None:
        return {"placement": "harness process", "num_workers": 1}
    return {
        "placement": clients.placement,
        "num_workers": len(clients.info),
        "workers": clients.info,
        **({"ray_address": clients.address} if clients.placement == "ray" else {}),
    }


async def _measure_cell(context: CellContext, plan: CellPlan) -> None:
    engine, results, options, progress = context.run.engine, context.results, context.options, context.progress
    cell_id, timeout_s = plan.spec.cell_id, context.scenario.timeout_s
    cell = CellRun(plan)
    task = progress.add_task(cell_id, total=plan.num_measured)
    profile = options.profile
    if profile == "" and results.doc["cells"]:
        profile = None  # --profile without a cell id: the scenario's first cell only
    observer = CellObserver(engine, cell_id, profile, options.out_dir / "profiles" / cell_id)
    window = CellWindow(cell_id, context.instruments, _host_profiler(engine, cell_id, results, options))
    await observer.start()
    sampler = GpuSampler(options.gpu_interval_ms)
    sampler.start()
    try:
        measured = None
        if context.clients is not None:
            from compare.run.clients.clientprocs import client_plan

            async def measured(cell_plan):
                return await context.clients.run(client_plan(cell_plan, timeout_s))

        await run_cell(
            engine, cell, timeout_s, context.decode, lambda: progress.advance(task), measured, lambda: window
        )
    finally:
        gpu = sampler.stop()
        observed = await observer.stop(cell.origin_ns)
        observed.update(window.observed(results.path.parent, cell.origin_ns))
        document = cell_document(
            context.scenario,
            cell,
            context.description["capabilities"],
            gpu,
            observed,
            options.slo,
            context.run.start_together,
            context.description["request_args"],
        )
        add_deltas([*results.doc["cells"], document], lambda c: c["requests"])  # a constrained cell vs its `none` one
        results.add_cell(document)  # written even when the cell was interrupted
        progress.remove_task(task)
    context.console.print(_cell_line(document), highlight=False, markup=False)


def _host_profiler(engine, cell_id: str, results, options: RunOptions):
    """py-spy over the measured part of this cell, when --host-profile names it (or all)."""
    if options.host_profile not in ("all", cell_id):
        return None
    from compare.run.instruments.hostprofile import HostProfiler

    folder = results.path.parent / "host_profiles" / results.path.stem / cell_id
    return HostProfiler(folder, options.host_profile_rate, engine.host_anatomy)


def _cell_line(cell: dict[str, Any]) -> str:
    s = cell["summary"]
    ttft, tok_s = s["ttft_ms"].get("p50"), s["output_tok_per_s"]
    line = f"cell {cell['cell_id']}: {s['num_ok']}/{s['num_requests']} ok"
    if ttft is not None and tok_s is not None:
        line += f", TTFT p50 {ttft:.1f} ms, {tok_s:.1f} output tok/s"
    harness = cell.get("harness") or {}
    if cell.get("client_workers"):
        shares = "/".join(
            _loop_text(w) if w.get("loop_thread_cpu_share") is not None else f"died ({w.get('died')})"
            for w in cell["client_workers"]
        )
        line += f", client workers' loops {shares}"
    elif harness.get("loop_thread_cpu_share") is not None:
        line += f", harness CPU {harness['process_cpu_share']:.0%} (loop {_loop_text(harness)})"
    lengths = s.get("output_tokens") or {}
    if not cell["config"].get("ignore_eos", True) and lengths.get("count"):
        line += f", output {lengths['p50']:.0f} tokens p50 ({lengths['min']:.0f}-{lengths['max']:.0f}, ends at EOS)"
    telemetry = (cell.get("telemetry") or {}).get("summary") or {}
    if telemetry.get("running_max") is not None:
        line += f", running mean {telemetry['running_mean']:.1f} max {telemetry['running_max']}"
    counts = (cell.get("speculative") or {}).get("per_request") or (cell.get("speculative") or {}).get("per_step")
    if counts and counts.get("acceptance_length") is not None and counts.get("acceptance_rate") is not None:
        line += f", acceptance length {counts['acceptance_length']:.2f} (rate {counts['acceptance_rate']:.0%})"
    for source, value in joules_per_token(cell.get("energy")).items():
        line += f", {source.upper()} {value:.3g} J/token"
    if cell.get("structured", {}).get("mode") not in (None, "none"):
        line += ", " + delta_text(cell["structured"])
    slo = cell.get("slo")
    if slo and slo["share_met"] is not None:
        line += f", SLO met {slo['share_met']:.0%} (goodput {slo['goodput_request_per_s']:.2f} req/s"
        line += f"; most missed: {slo['most_missed']})" if slo["most_missed"] else ")"
    line += stop_text(cell.get("stop"), cell["config"].get("request_rate"))
    return line + f", {len(cell['warnings'])} warning(s)"


def _loop_text(figures: dict[str, Any]) -> str:
    """The loop's busy share (the client-bound criterion) and its thread's CPU share."""
    busy = figures.get("loop_busy_share")
    return (f"busy {busy:.0%}, " if busy is not None else "") + f"thread CPU {figures['loop_thread_cpu_share']:.0%}"


def _decoder(tokenizer):
    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    return decode


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )
