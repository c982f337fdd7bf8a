"""From parsed CLI arguments to results files: validate everything first, then measure."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from compare.cli import engine_args_for, resolve_engines, scenario_overrides
from compare.fidelity import attach_fidelity, fidelity_lines
from compare.overhead import attach_http_overhead, overhead_lines
from compare.report import print_report
from compare.session import RunOptions, run_scenario
from engines import load_engine_class
from engines.base import UsageError
from workloads.models import DEFAULT_MODEL, resolve_model
from workloads.plan import check_fits, plan_scenario
from workloads.scenarios import apply_overrides, builtin_names, load_scenario


def load_scenarios(args: argparse.Namespace):
    names = args.scenario or ["smoke"]
    if "all" in names:
        names = [n for n in builtin_names() if n != "smoke"]
    overrides = scenario_overrides(args)
    scenarios = []
    for name in names:
        scenario = apply_overrides(load_scenario(name), args.quick, overrides)
        if args.distinct_prompts and scenario.prompt_mode == "same":
            scenario = apply_overrides(scenario, False, {"prompt_mode": "distinct"})
        scenarios.append(scenario)
    return scenarios


def tokenizer_for(model, args: argparse.Namespace):
    """The model's own tokenizer; `--tokenizer` overrides it and is required for `ollama:<tag>`."""
    if args.tokenizer:
        return resolve_model(args.tokenizer, args.cache_dir).load_tokenizer()
    if model.kind == "ollama":
        raise UsageError(
            "--model ollama:<tag> needs --tokenizer with the same vocabulary to build exact prompts "
            "(a local HF folder, or e.g. synthetic:llama-3.1-8b for llama3.1 tags)"
        )
    return model.load_tokenizer()


def with_http_mode(engines: dict, args: argparse.Namespace, model) -> dict:
    """--mode http/both: `X-http` talks to X's own server, launched with X's resolved args."""
    if args.mode == "inprocess":
        return engines
    from engines.http_openai import HttpCompletionsEngine

    modes: dict = {}
    for name, engine in engines.items():
        if not hasattr(engine, "http_server"):
            raise UsageError(f"engine {name!r} has no HTTP server mode; --mode http/both works with vllm, sglang, llamacpp")
        if args.mode == "both":
            modes[name] = engine
        http_args = {"log_dir": str(args.out), **engine_args_for("http", args.engine_arg)}
        modes[f"{name}-http"] = HttpCompletionsEngine(model, http_args, launch=engine.http_server())
    return modes


async def run_all(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 200)
    engine_classes = {name: load_engine_class(name) for name in resolve_engines(args)}
    scenarios = load_scenarios(args)
    model = resolve_model(args.model or DEFAULT_MODEL, args.cache_dir)
    tokenizer = tokenizer_for(model, args)
    plans = {s.name: plan_scenario(s, tokenizer, model.max_context_tokens) for s in scenarios}
    # every engine is constructed (and so validated) before anything is measured
    engines = {name: cls(model, engine_args_for(name, args.engine_arg)) for name, cls in engine_classes.items()}
    engines = with_http_mode(engines, args, model)
    for name, engine in engines.items():
        for scenario in scenarios:
            limit = getattr(engine, "max_context_tokens", None)
            fix = f"raise it with --engine-arg {name}.{getattr(engine, 'context_arg', 'n_ctx')}=N"
            check_fits(scenario, plans[scenario.name], limit, f"the context of engine {name!r}", fix)
    options = RunOptions(out_dir=args.out, quick=args.quick, show_progress=not args.no_progress and sys.stderr.isatty())
    failures = 0
    runs = {}
    for name, engine in engines.items():
        try:
            await engine.start()
        except UsageError:
            raise  # e.g. no server to talk to: one line, exit 2; earlier engines' files are written
        except Exception as exc:  # an engine that cannot start: one line, the other engines go on
            print(f"error: engine {name!r} failed to start: {type(exc).__name__}: {exc}", file=sys.stderr)
            failures += 1
            continue
        try:
            for scenario in scenarios:
                console.print(f"== {name} / {scenario.name} on {model.spec}", highlight=False, markup=False)
                try:
                    results = await run_scenario(name, engine, model, scenario, plans[scenario.name], tokenizer, options, console)
                except Exception as exc:  # recorded as failed in its results file; the next scenario goes on
                    print(f"error: engine {name!r} failed on {scenario.name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    failures += 1
                    continue
                runs[(name, scenario.name)] = results
                print_report(results.doc, console)
                console.print(f"results: {results.path}", highlight=False, markup=False)
        finally:
            await engine.stop()
    for comparison in attach_fidelity(runs):
        for line in fidelity_lines(comparison):
            console.print(line, highlight=False, markup=False)
    for comparison in attach_http_overhead(runs):
        for line in overhead_lines(comparison):
            console.print(line, highlight=False, markup=False)
    return 1 if failures else 0
