"""The one gate: every input of a command checked before any model is built, any point runs or any results folder
is made (check_inputs). What argparse cannot see alone: a cell no scenario has, a deadline below zero, an `ENGINE.`
prefix naming an engine the run does not have, every point's engine and request args by the engine's own checks,
constraints and LoRA only where served, client scale-out only in HTTP mode, a model that exists and whose declared
context holds the scenarios. Each failure is a UsageError: one line, exit 2.

Two checks need what only a built model or a constructed engine knows, and run later, still before any engine
starts: the planned prompts' exact lengths against the context (workloads/plan.py check_fits), and a chat template
asked of a model that has none (workloads/chat.py)."""

from __future__ import annotations

import argparse

from engines.base import UsageError


def check_inputs(args: argparse.Namespace, scenarios, engines: tuple[str, ...]) -> None:
    """Every input of the command, in the order a user would fix them."""
    from compare.run.config import check_constraints, check_lora, request_args_for
    from compare.run.instruments.nsys import check_nsys
    from compare.run.points.points import points_for
    from engines import load_engine_class

    if args.resume is not None and not args.resume.is_dir():
        raise UsageError(
            f"--resume {args.resume}: no such folder; give the results or sweep folder of the run to continue"
        )
    check_client_scale(args.client_procs, args.ray, args.mode, args.engine or [])
    check_deadline(args.deadline)
    check_search(args.find_max_rate, args.slo)
    check_profile_cell(args.profile, scenarios)
    check_profile_cell(args.nsys, scenarios, "--nsys")
    check_host_profile(args.host_profile, args.host_profile_rate, scenarios)
    for name in engines:
        load_engine_class(name)  # an unknown or missing engine
    names = run_engines(engines, args.mode, args.ablation)
    check_engine_scopes(tuple(args.engine_arg), names, "--engine-arg")
    check_engine_scopes(tuple(args.sweep), names, "--sweep")
    points, _ = points_for(engines, tuple(args.sweep), args.ablation, args.mode)  # a malformed --sweep, --ablation
    if args.start_together:
        check_together(points, bool(args.sweep or args.ablation))
    check_points(tuple(args.engine_arg), tuple(args.request_arg), points)
    check_step_records(tuple(args.engine_arg), points, scenarios)
    check_early_stop(scenarios, points, args.client_procs, args.ray)
    check_nsys(args.nsys, engines, args.mode, args.profile)
    check_engine_scopes(tuple(args.request_arg), names, "--request-arg")
    checked = {"http"} if args.mode == "http" else names - {"http"} if args.mode == "inprocess" else names
    for name in sorted(checked):  # every engine that sends requests takes every key given to it
        request_args_for(name, tuple(args.request_arg))
        check_constraints(name, scenarios)
    for name in sorted(names):  # the in-process engine launches the server that HTTP mode drives: both must serve LoRA
        check_lora(name, scenarios)
    check_model(args.model, args.tokenizer, engines, tuple(args.engine_arg), scenarios)


def check_early_stop(scenarios, points, client_procs: int, ray: str | None) -> None:
    """--until-ci and --end-saturated end a cell from this process's event loop, one send at a time: not with client
    workers elsewhere, nor with an engine that takes the whole cell in one call."""
    from engines import load_engine_class
    from engines.base import BatchEngine

    asked = [s for s in scenarios if s.early_stop is not None]
    if not asked:
        return
    flag = "--until-ci" if asked[0].until_ci else "--end-saturated"
    if client_procs > 1 or ray:
        raise UsageError(f"{flag} ends cells sent from this process; drop --client-procs/--ray or {flag}")
    for point in points:
        if BatchEngine in load_engine_class(point.engine).__mro__:
            raise UsageError(f"{flag} needs a streaming engine; {point.engine!r} takes each cell in one call")


def check_together(points, is_sweep: bool) -> None:
    """--start-together: two engines or more, side by side, and no sweep of points."""
    if is_sweep:
        raise UsageError(
            "--start-together starts the run's engines side by side; it does not take --sweep or --ablation"
        )
    if len(points) < 2:
        raise UsageError("--start-together needs two engines or more (repeat --engine, or --mode both)")


def check_points(engine_args: tuple[str, ...], request_args: tuple[str, ...], points) -> None:
    """Every point's engine args (by the engine class's own check) and request args, and a server for HTTP mode."""
    from compare.run.config import engine_args_for, request_args_for
    from engines import load_engine_class

    for point in points:
        engine_class = load_engine_class(point.engine)
        if point.mode == "http" and point.engine != "http" and not engine_class.serves_http:
            raise UsageError(
                f"engine {point.engine!r} has no HTTP server mode; --mode http/both works with vllm, sglang, llamacpp"
            )
        engine_class.check_args(engine_args_for(point.engine, engine_args + point.engine_args))
        request_args_for("http" if point.mode == "http" else point.engine, request_args + point.request_args)


def check_step_records(engine_args: tuple[str, ...], points, scenarios) -> None:
    """A batch-shapes scenario reads each step from the engine's own records: every point's engine must keep them."""
    from compare.run.config import engine_args_for
    from engines import load_engine_class

    shaped = [s.name for s in scenarios if s.step_shapes]
    for point in points if shaped else ():
        if point.mode == "http":
            raise UsageError(
                f"scenario {shaped[0]!r} reads the engine's own step records, which HTTP mode does not see; "
                "run it with --mode inprocess"
            )
        why = load_engine_class(point.engine).why_no_step_records(
            engine_args_for(point.engine, engine_args + point.engine_args)
        )
        if why:
            raise UsageError(f"scenario {shaped[0]!r} on engine {point.engine!r}: {why}")


def check_model(spec: str | None, tokenizer: str | None, engines, engine_args: tuple[str, ...], scenarios) -> None:
    """The model (and --tokenizer) exist, and every cell's declared lengths fit the context the model's config and
    each engine's context arg, where given, declare; nothing is built or loaded."""
    from compare.run.config import engine_args_for
    from engines import load_engine_class
    from workloads.models import DEFAULT_MODEL, check_model_spec
    from workloads.plan import MODEL_CONTEXT_FIX, check_declared_fit

    spec = spec or DEFAULT_MODEL
    limit = check_model_spec(spec)
    if tokenizer:
        check_model_spec(tokenizer)
    elif spec.startswith("ollama:"):
        raise UsageError(
            "--model ollama:<tag> needs --tokenizer with the same vocabulary to build exact prompts "
            "(a local HF folder, or e.g. synthetic:llama-3.1-8b for llama3.1 tags)"
        )
    for scenario in scenarios:
        check_declared_fit(scenario, limit, "the model's context", MODEL_CONTEXT_FIX)
    for name in engines:
        arg = load_engine_class(name).context_arg
        given = engine_args_for(name, engine_args).get(arg) if arg else None
        for scenario in scenarios if given else ():
            check_declared_fit(scenario, int(given), f"the context of engine {name!r}", f"raise {name}.{arg}")


def check_client_scale(client_procs: int, ray: str | None, mode: str, engines: list[str]) -> None:
    if client_procs < 1:
        raise UsageError(f"--client-procs {client_procs}: give 1 or more client processes")
    if (client_procs > 1 or ray) and mode == "inprocess" and set(engines) != {"http"}:
        flag = "--ray" if ray else "--client-procs"
        raise UsageError(
            f"{flag} works in HTTP mode only (an in-process engine lives in the harness's one process); "
            "add --mode http or --mode both"
        )
    if ray:
        from compare.run.clients.rayclients import check_reachable, import_ray

        import_ray()
        if ray != "auto":
            check_reachable(ray)


def check_profile_cell(profile: str | None, scenarios, flag: str = "--profile") -> None:
    """--profile CELL (or --nsys CELL) must name a cell of this run; otherwise the profiler window would never open."""
    if not profile:
        return
    cells = sorted({cell.cell_id for scenario in scenarios for cell in scenario.cells()})
    if profile not in cells:
        alone = " (or --profile alone for each scenario's first)" if flag == "--profile" else ""
        raise UsageError(
            f"{flag} {profile!r}: no scenario of this run has that cell; its cells: {', '.join(cells)}{alone}"
        )


def check_host_profile(cell: str | None, rate_hz: int, scenarios) -> None:
    """--host-profile CELL|all: a cell of this run, a positive rate, and py-spy installed."""
    if cell is None:
        return
    cells = sorted({c.cell_id for scenario in scenarios for c in scenario.cells()})
    if cell != "all" and cell not in cells:
        raise UsageError(
            f"--host-profile {cell!r}: no scenario of this run has that cell; its cells: {', '.join(cells)} (or all)"
        )
    if rate_hz <= 0:
        raise UsageError(f"--host-profile-rate {rate_hz}: give samples per second > 0 (default 100)")
    from compare.run.instruments.hostprofile import py_spy_binary

    py_spy_binary()


def check_deadline(deadline_s: float) -> None:
    if deadline_s < 0:
        raise UsageError(f"--deadline {deadline_s:g}: give seconds > 0, or 0 for no deadline")


def check_search(find_max_rate: int, slo: dict[str, float] | None) -> None:
    if find_max_rate and not slo:
        raise UsageError(
            "--find-max-rate needs --slo: the search keeps the highest rate at which 99% of requests meet it"
        )


def check_engine_scopes(pairs: tuple[str, ...], run_engines: set[str], flag: str) -> None:
    """An `ENGINE.` prefix naming an engine that is not in the run would be dropped silently: a typo, usually."""
    from engines import REGISTRY

    for pair in pairs:
        scope, dot, _ = pair.partition("=")[0].partition(".")
        if dot and scope in REGISTRY and scope not in run_engines:
            raise UsageError(
                f"{flag} {pair!r}: engine {scope!r} is not in this run (its engines: "
                f"{', '.join(sorted(run_engines))}); fix the prefix or add --engine {scope}"
            )


def run_engines(engines: tuple[str, ...], mode: str, ablation: str | None) -> set[str]:
    """The names an `ENGINE.` prefix may take in this run: its engines, an ablation set's, `http` for the HTTP twin."""
    from compare.run.points.ablations import ABLATIONS

    points = ABLATIONS[ablation].points if ablation in ABLATIONS else ()
    names = set(engines) | {engine for _, engine, _, _ in points}
    if mode in ("http", "both") or any(point_mode == "http" for *_, point_mode in points):
        names.add("http")
    return names
