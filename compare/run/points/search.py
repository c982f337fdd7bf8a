"""`--find-max-rate`: the highest open-loop request rate at which the engine still meets the SLO.

A rate holds when at least 99% of its requests meet every limit (MLPerf's p99 convention). From the
scenario's first rate (default 1 req/s) the search doubles the rate while it holds, then bisects between
the last rate that held and the first that broke, for at most `steps` cells and `budget_s` seconds. Each
step is one cell in its own results file; the search itself goes to `search_<engine>_<scenario>_<time>.json`.

Every step watches for saturation (compare/analysis/saturation.py): a rate whose in-flight count and latency grow
without bound is rejected as soon as that shows, its requests still in flight cancelled, and the step records the
schedule it did not wait for (a floor on the time saved: the queue's drain would have come on top).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from compare.results.store import results_path, write_json_atomic
from compare.run.session import run_scenario
from workloads.plan import plan_scenario

HOLD_SHARE = 0.99
BUDGET_S = 1800.0


def next_rate(held: float | None, broke: float | None, current: float) -> float:
    if broke is None:
        return current * 2
    if held is None:
        return current / 2
    return (held + broke) / 2


async def search_max_rate(
    run, model, scenario, tokenizer, options, console, steps: int, budget_s: float = BUDGET_S
) -> dict[str, Any]:
    rate = scenario.request_rate[0] if scenario.request_rate else 1.0
    held, broke, history = None, None, []
    started = time.monotonic()
    for step in range(steps):
        if time.monotonic() - started > budget_s:
            break
        stepped = dataclasses.replace(scenario, request_rate=(rate,), end_saturated=True)
        plans = plan_scenario(stepped, tokenizer, model.max_context_tokens)[:1]  # the first prompt length
        results = await run_scenario(run, model, stepped, plans, tokenizer, options, console)
        cell = results.doc["cells"][-1]
        slo = cell.get("slo") or {}
        share = slo.get("share_met") or 0.0
        stop = cell.get("stop") or {}
        saturated = bool((stop.get("saturation") or {}).get("saturated"))
        holds = share >= HOLD_SHARE and not saturated
        history.append(
            {
                "step": step,
                "request_rate": rate,
                "share_met": share,
                "saturated": saturated,
                "ended_after_s": stop.get("ended_after_s"),
                "schedule_left_s": (stop.get("saturation") or {}).get("schedule_left_s"),
                "holds": holds,
                "goodput_request_per_s": slo.get("goodput_request_per_s"),
                "results": str(results.path),
            }
        )
        if holds:
            held = max(held or 0.0, rate)
        else:
            broke = min(broke or float("inf"), rate)
        rate = next_rate(held, broke, rate)
    doc = {
        "kind": "find_max_rate",
        "engine": run.name,
        "scenario": scenario.name,
        "slo": options.slo,
        "hold_share": HOLD_SHARE,
        "max_rate_held": held,
        "lowest_rate_broken": broke,
        "steps": history,
        "time_saved_s_at_least": sum(h["schedule_left_s"] or 0.0 for h in history),
        "elapsed_s": time.monotonic() - started,
    }
    path = results_path(options.out_dir, f"search_{run.name}", scenario.name)
    write_json_atomic(path, doc)
    verdict = f"{held:g} req/s held" if held else "no rate tried held"
    console.print(
        f"max rate meeting the SLO ({HOLD_SHARE:.0%} of requests): {verdict}; first broken: {broke}; "
        f"{sum(h['saturated'] for h in history)} step(s) ended at saturation, >= {doc['time_saved_s_at_least']:.1f} s "
        f"saved; {path}",
        highlight=False,
        markup=False,
    )
    return doc
