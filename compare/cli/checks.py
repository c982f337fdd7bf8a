"""Every input checked before anything is measured: what argparse cannot see alone (a cell no scenario has, a
deadline below zero, an `ENGINE.` prefix naming an engine the run does not have, the engines' own keys for every
sweep point, client scale-out only in HTTP mode). Each failure is a UsageError: one line, exit 2."""

from __future__ import annotations

from engines.base import UsageError


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
