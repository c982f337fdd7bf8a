"""From a RunConfig to results files: validate everything first, then measure, then compare the runs.

Every engine is constructed (and so validated) and every prompt planned and checked against every
context limit before anything is measured. Each engine then starts once and runs every scenario.
Sweeps, ablation sets and isolated engines come here through compare/run/points/sweep.py, one point at a time.
"""

from __future__ import annotations

import time

from rich.console import Console

from compare.analysis.pairs import compare_pairs, comparison_lines
from compare.report.tables import print_report
from compare.run.config import RunConfig, engine_args_for, request_args_for
from compare.run.enginelog import EngineLog, HarnessStream, engine_log_path, harness_err, harness_out
from compare.run.points.resume import find_previous
from compare.run.points.search import search_max_rate
from compare.run.session import EngineRun, RunOptions, run_scenario
from compare.run.points.together import arrive
from engines import REGISTRY, load_engine_class
from engines.base import BatchEngine, Engine, UsageError
from workloads.lora import resolve_adapters, served_adapters
from workloads.models import resolve_model
from workloads.plan import check_fits, plan_scenario


def tokenizer_for(model, config: RunConfig):
    """The model's own tokenizer; `--tokenizer` overrides it (compare/cli/checks.py requires it for `ollama:<tag>`)."""
    if config.tokenizer:
        return resolve_model(config.tokenizer, config.cache_dir).load_tokenizer()
    return model.load_tokenizer()


def build_engines(config: RunConfig, model, adapters: tuple = ()) -> list[EngineRun]:
    """Construct every engine (validating its args); with --mode http/both, `X-http` drives X's own server.
    `adapters`: the LoRA adapters the run's scenarios ask for, which every engine serves from its start."""
    runs = []
    for name in config.engines:
        given = engine_args_for(name, config.engine_args)
        engine = load_engine_class(name)(model, given)
        if adapters:
            engine.use_lora(adapters)  # check_lora refused engines without it before anything was built
        if config.mode != "http":  # in HTTP mode the twin sends the requests
            engine.request_args = request_args_for(name, config.request_args)
        entry = REGISTRY.get(name)
        base = entry.variant_of if entry and entry.variant_of else name
        kind = "batch" if isinstance(engine, BatchEngine) else "inprocess"
        variant = {"of": base, "kind": kind, "engine_args": given}
        if config.mode in ("inprocess", "both"):
            runs.append(EngineRun(name, engine, variant))
        if config.mode in ("http", "both"):
            runs.append(EngineRun(f"{name}-http", http_twin(name, engine, model, config), {**variant, "kind": "http"}))
    return runs


def http_twin(name: str, engine: Engine, model, config: RunConfig) -> Engine:
    from engines.http_openai import HttpCompletionsEngine

    launch = engine.http_server()  # compare/cli/checks.py refused engines without `serves_http`
    http_args = {"log_dir": str(config.out_dir), **engine_args_for("http", config.engine_args)}
    twin = HttpCompletionsEngine(model, http_args, launch=launch)
    twin.request_args = request_args_for("http", config.request_args)
    return twin


async def run_point(config: RunConfig) -> int:
    """One point of the command in this process: plan its prompts, then build, check, start and measure its engines."""
    console = Console(file=HarnessStream(), width=None if harness_out().isatty() else 200)
    model = resolve_model(config.model, config.cache_dir)
    tokenizer = tokenizer_for(model, config)
    adapters = {
        s.name: resolve_adapters(s.lora_adapters, s.lora_rank, model.path, model.cache_dir) for s in config.scenarios
    }
    plans = {
        s.name: plan_scenario(s, tokenizer, model.max_context_tokens, adapters=adapters[s.name])
        for s in config.scenarios
    }
    with EngineLog(None if config.verbose else engine_log_path(config.out_dir, config.engines)) as log:
        return await _run_engines(config, model, tokenizer, plans, adapters, console, log)


async def _run_engines(
    config: RunConfig, model, tokenizer, plans: dict, adapters: dict, console: Console, log: EngineLog
) -> int:
    """Construct and check every engine, then start each in turn and run every scenario on it."""
    runs = build_engines(config, model, served_adapters(adapters.values()))
    for run in runs:
        limit, arg = run.engine.max_context_tokens, run.engine.context_arg
        fix = f"raise it with --engine-arg {run.name}.{arg}=N" if arg else "use a longer-context model"
        for scenario in config.scenarios:
            check_fits(scenario, plans[scenario.name], limit, f"the context of engine {run.name!r}", fix)
    if config.profile is not None:
        for run in runs:  # engines that set their profiler up at start learn the folder now
            run.engine.profile_folder = str((config.out_dir / "profiles" / run.name).resolve())
            run.engine.profile_kind = config.profile_kind
    log_path = log.keep()  # every input checked: from here on the engines' output has a file
    if log_path is not None:
        console.print(f"engine log: {log_path} (--verbose shows it live)", highlight=False, markup=False)
    options = RunOptions(
        out_dir=config.out_dir,
        quick=config.quick,
        show_progress=config.show_progress,
        slo=config.slo,
        profile=config.profile,
        host_profile=config.host_profile,
        host_profile_rate=config.host_profile_rate,
    )
    failures, finished = 0, []
    for run in runs:
        previous = {s.name: _previous(config, run, s, model.spec) for s in config.scenarios}
        todo = [
            s for s in config.scenarios if not (previous[s.name] and previous[s.name][1].get("status") == "complete")
        ]
        for scenario in [s for s in config.scenarios if s not in todo]:
            console.print(
                f"== {run.name} / {scenario.name}: complete in {previous[scenario.name][0]}, skipped (--resume)",
                highlight=False,
                markup=False,
            )
        if not todo:
            continue
        try:
            started = time.perf_counter()
            await run.engine.start()
            run.start_s = time.perf_counter() - started
            if config.start_barrier is not None:  # up: wait for this engine's turn (compare/run/points/together.py)
                console.print(
                    f"== {run.name}: started in {run.start_s:.1f} s; waiting at the start barrier",
                    highlight=False,
                    markup=False,
                )
                info = {"engine_start_s": round(run.start_s, 3), "kv_capacity_tokens": run.engine.kv_capacity_tokens()}
                run.start_together = await arrive(config.start_barrier, run.name, info)
        except UsageError:
            raise  # e.g. no server to talk to: one line, exit 2; earlier engines' files are written
        except Exception as exc:  # an engine that cannot start: one line, the other engines go on
            seen = f" (its output: {log_path})" if log_path else ""
            print(f"error: engine {run.name!r} failed to start: {type(exc).__name__}: {exc}{seen}", file=harness_err())
            failures += 1
            continue
        clients = None
        try:
            clients = await start_clients(run, config, tokenizer, console)
            for scenario in todo:
                console.print(f"== {run.name} / {scenario.name} on {model.spec}", highlight=False, markup=False)
                if scenario.kv_pressure:  # the working set is sized against this engine's KV cache, known now
                    plans[scenario.name] = replan_for_pressure(
                        run, scenario, tokenizer, console, adapters[scenario.name]
                    )
                try:
                    if config.find_max_rate:
                        await search_max_rate(run, model, scenario, tokenizer, options, console, config.find_max_rate)
                        continue
                    results = await run_scenario(
                        run,
                        model,
                        scenario,
                        plans[scenario.name],
                        tokenizer,
                        options,
                        console,
                        previous[scenario.name],
                        clients,
                    )
                except Exception as exc:  # recorded as failed in its results file; the next scenario goes on
                    print(
                        f"error: engine {run.name!r} failed on {scenario.name!r}: {type(exc).__name__}: {exc}",
                        file=harness_err(),
                    )
                    failures += 1
                    continue
                finished.append(results)
                print_report(results.doc, console)
                console.print(f"results: {results.path}", highlight=False, markup=False)
                failed = sum(c["summary"]["num_requests"] - c["summary"]["num_ok"] for c in results.doc["cells"])
                if failed and not config.allow_failures:
                    print(
                        f"error: {failed} request(s) of {run.name!r} on {scenario.name!r} failed (errors in "
                        f"{results.path}); exit 1 (--allow-failures: exit 0)",
                        file=harness_err(),
                    )
                    failures += 1
        finally:
            if clients is not None:
                await clients.stop()
            await run.engine.stop()
    for name, comparison in compare_pairs(finished):
        for line in comparison_lines(name, comparison):
            console.print(line, highlight=False, markup=False)
    return 1 if failures else 0


async def start_clients(run: EngineRun, config: RunConfig, tokenizer, console):
    """--client-procs N / --ray: the HTTP run's client workers, started once for all its cells (None: one process)."""
    from compare.run.clients.clientprocs import LocalClientPool
    from engines.http_openai import HttpCompletionsEngine

    if not isinstance(run.engine, HttpCompletionsEngine) or (config.client_procs <= 1 and not config.ray):
        return None
    http_engine = run.engine  # an HttpCompletionsEngine: its endpoint and server, beyond the contract
    worker_args = {
        "endpoint": http_engine.base_url,
        "server": http_engine.args["server"],
        "api_key_env": http_engine.args["api_key_env"],
        "max_connections": http_engine.args["max_connections"],
        "request_args": http_engine.request_args,
    }
    if config.ray:
        from compare.run.clients.rayclients import RayClientPool

        pool = RayClientPool(worker_args, config.client_procs, config.ray, tokenizer)
    else:
        pool = LocalClientPool(worker_args, config.client_procs, tokenizer)
    await pool.start()
    console.print(
        f"clients: {config.client_procs} worker(s) as {pool.placement} against {http_engine.base_url}",
        highlight=False,
        markup=False,
    )
    return pool


def replan_for_pressure(run: EngineRun, scenario, tokenizer, console, adapters: tuple = ()) -> list:
    capacity = run.engine.kv_capacity_tokens()
    if not capacity:
        raise UsageError(
            f"scenario {scenario.name!r} sets kv_pressure, but engine {run.name!r} does not report its KV "
            "capacity; drop kv_pressure and set num_groups"
        )
    plans = plan_scenario(
        scenario, tokenizer, run.engine.max_context_tokens, kv_capacity_tokens=capacity, adapters=adapters
    )
    groups = plans[0].traffic["num_groups"]
    console.print(
        f"kv_pressure {scenario.kv_pressure:g}: KV capacity {capacity} tokens -> {groups} groups x "
        f"{scenario.shared_prefix_tokens}-token prefixes",
        highlight=False,
        markup=False,
    )
    return plans


def _previous(config: RunConfig, run: EngineRun, scenario, model_spec: str):
    """--resume: this run's newest file in the folder, or None."""
    if config.resume is None:
        return None
    return find_previous(config.out_dir, run.name, run.variant, scenario.to_json(), model_spec, config.quick)
