"""How a cell that ended early says so: its warnings and its line in the run's output (what it recorded under `stop`:
compare/run/stopping.py)."""

from __future__ import annotations

from typing import Any


def stop_warnings(stop: dict[str, Any] | None, request_rate: Any = None) -> list[str]:
    """A saturated cell, and an `--until-ci` cell whose cap ended it before its interval was tight enough."""
    if not stop:
        return []
    warnings = []
    saturation = stop.get("saturation") or {}
    if saturation.get("saturated"):
        warnings.append(
            f"saturated at {request_rate} req/s: in-flight count and E2E latency grew without bound; ended after "
            f"{stop['ended_after_s']:.1f} s with {saturation['num_in_flight_cancelled']} in flight cancelled "
            "(their partial records under stop.saturation.cancelled)"
        )
    if stop.get("cap_ended"):
        figure = stop.get("figure_at_end") or {}
        known = f"+/-{figure['relative_half_width']:.1%}" if figure else "no interval yet"
        warnings.append(
            f"--until-ci {stop['until_ci']}: the cap ({stop['ended_by']}) ended the cell at {known}, not the interval"
        )
    return warnings


def stop_text(stop: dict[str, Any] | None, request_rate: Any = None) -> str:
    """A clause for the cell's line: what ended it, with the figure or the time the saturation saved."""
    if not stop:
        return ""
    saturation = stop.get("saturation") or {}
    if saturation.get("saturated"):
        left = saturation.get("schedule_left_s")
        saved = f", >= {left:.1f} s of schedule skipped" if left is not None else ""
        return f", SATURATED at {request_rate} req/s after {stop['ended_after_s']:.1f} s{saved}"
    if stop.get("until_ci") is None:
        return ", not saturated" if saturation else ""
    figure = stop.get("figure_at_stop") or stop.get("figure_at_end")
    known = f" +/-{figure['relative_half_width']:.1%} at {figure['num_requests']} requests" if figure else ""
    return f", --until-ci {stop['until_ci']}: ended by {stop['ended_by']}{known}"
