"""Warnings stored and printed with every cell: nothing that skews a number passes silently.

Covers unstable samples (coefficient of variation >= 10%), failures and timeouts, early EOS,
truncated or re-counted prompts, warm caches, failed cache resets, engine-side queueing, effective
concurrency below the requested level, and engine clocks that disagree with the harness. Then what the
harness observed around the cell (`observed_warnings`): a profiler that ran, telemetry polls that took a
share of the engine's time, a load generator that fell behind its schedule, and a harness that was itself
the bottleneck (client-bound).
"""

from __future__ import annotations

from typing import Any

from compare.analysis.metrics import coefficient_of_variation
from compare.analysis.early_stop import stop_warnings
from compare.analysis.phases import host_profile_warnings
from compare.results.records import RequestRecord

GC_PAUSE_WARN_MS = 1.0  # a longer collector pause inside the measured window is a warning, as client-bound is
POLL_BUSY_WARN_SHARE = 0.02  # telemetry polls answered for this share of the cell: the engine paid for them

CV_THRESHOLD = 0.10
SEND_LAG_WARN_MS = 10.0
CLIENT_BOUND_SHARE = 0.85  # the event loop busy (never waiting) this share of the cell: requests queue in the client
_STABILITY_METRICS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "E2E latency"}


def cell_warnings(
    records: list[RequestRecord],
    summary: dict[str, Any],
    config: dict[str, Any],
    capabilities: dict[str, Any],
    cache_resets: list[dict[str, Any]],
) -> list[str]:
    warnings: list[str] = []
    ok = [r for r in records if r.ok]
    for key, label in _STABILITY_METRICS.items():
        cv = coefficient_of_variation(summary[key])
        if cv is not None and cv >= CV_THRESHOLD:
            warnings.append(f"unstable: {label} coefficient of variation {cv:.0%} (>= {CV_THRESHOLD:.0%})")
    failed = [r for r in records if not r.ok]
    if failed:
        warnings.append(f"failed: {len(failed)} of {len(records)} requests (first: {failed[0].error})")
    short = [
        r
        for r in ok
        if (
            min(sum(tokens) for _, tokens in r.sequences())
            if r.chunk_sequence  # n > 1: each
            else r.output_tokens
        )
        < r.target_output_tokens
    ]
    if config.get("ignore_eos") is False:  # the cell asked for outputs that end at EOS: only other ends are early
        short = [r for r in short if r.finish_reason != "stop"]
    if short:
        reasons = sorted({str(r.finish_reason) for r in short})
        warnings.append(
            f"early stop: {len(short)} requests ended before {short[0].target_output_tokens} tokens "
            f"(finish_reason {', '.join(reasons)}); their tokens still count"
        )
    mismatched = [r for r in ok if r.prompt_tokens_reported not in (None, r.prompt_tokens)]
    if mismatched:
        r = mismatched[0]
        warnings.append(
            f"prompt mismatch: engine counted {r.prompt_tokens_reported} tokens for a {r.prompt_tokens}-token "
            f"prompt in {len(mismatched)} requests (truncated or re-tokenised)"
        )
    warnings += _cache_warnings(ok, config, cache_resets)
    if any(r.timing == "batch" for r in records):
        warnings.append(
            f"offline batch: all {len(records)} requests went to the engine at once (concurrency does not apply); "
            "no per-token timestamps, so TTFT, ITL and TPOT are not measured"
        )
    else:
        warnings += _concurrency_warnings(len(records), config, capabilities)
    if config.get("inexact_text_prompts"):
        warnings.append(
            f"prompt text: {config['inexact_text_prompts']} prompts' text does not re-encode to the exact ids; "
            "engines fed text see other lengths"
        )
    mismatched_counts = [r for r in ok if r.engine and r.engine.get("token_count_mismatches")]
    if mismatched_counts:
        warnings.append(
            f"token accounting: in {len(mismatched_counts)} requests the engine's token count and its output ids "
            "disagreed on some chunk (the engine's count was used; details in engine.token_count_mismatches)"
        )
    if any(r.engine and r.engine.get("clock_consistent") is False for r in ok):
        warnings.append("clock: the engine's first-token time is after the harness's receipt; delivery lag not trusted")
    return warnings


def _cache_warnings(ok: list[RequestRecord], config: dict[str, Any], resets: list[dict[str, Any]]) -> list[str]:
    warnings = [
        f"cache reset {r['when']} failed ({r['error']}): the cell may start warm" for r in resets if not r["ok"]
    ]
    cached = [r.cached_tokens for r in ok if r.cached_tokens]
    mode = config.get("prompt_mode")
    if not cached:
        return warnings
    mean = sum(cached) / len(cached)
    if mode == "same":
        warnings.append(
            f"warm cache by design: every request shares one prompt; {len(cached)} of {len(ok)} requests were served "
            f"{mean:.0f} cached prompt tokens on average (--distinct-prompts for cold prefills)"
        )
    elif mode == "language-pairs":  # one text per cell, asked once per request
        warnings.append(
            f"warm cache by design: every request of the cell asks the same text; {len(cached)} of {len(ok)} requests "
            f"were served {mean:.0f} cached prompt tokens on average (the first request of the cell is the cold one)"
        )
    elif mode not in ("shared-prefix", "multi-turn", "trace"):  # those reuse prefixes by design
        warnings.append(
            f"warm cache: {len(cached)} of {len(ok)} requests had {mean:.0f} cached prompt tokens on average "
            "although their prompts are distinct"
        )
    return warnings


def _concurrency_warnings(num_requests: int, config: dict[str, Any], capabilities: dict[str, Any]) -> list[str]:
    warnings = []
    concurrency = config["concurrency"]
    if num_requests < concurrency:
        warnings.append(f"concurrency: only {num_requests} requests at concurrency {concurrency}")
    limit = capabilities.get("max_concurrent_requests")
    if limit is not None and concurrency > limit:
        warnings.append(
            f"engine queueing: the engine serves {limit} request(s) at a time; at concurrency {concurrency} the rest "
            "wait inside it and their TTFT includes that wait"
        )
    return warnings


def observed_warnings(cell: dict[str, Any]) -> list[str]:
    """From what the harness watched around the cell (compare/run/instruments/observe.py), stored beside its records."""
    warnings = []
    profiled = cell.get("profiled") or {}
    if profiled.get("started"):
        warnings.append(
            f"profiled: the engine's profiler ran during this cell (trace {profiled.get('trace')}); "
            "its numbers carry the profiler's cost"
        )
    warnings += host_profile_warnings(cell.get("host_profile"))
    warnings += gc_warnings(cell.get("harness_gc"))
    warnings += poll_warnings((cell.get("telemetry") or {}).get("polls"))
    warnings += stop_warnings(cell.get("stop"), (cell.get("config") or {}).get("request_rate"))
    lag = cell["summary"].get("send_lag_ms", {})
    if lag.get("count") and lag["p99"] > SEND_LAG_WARN_MS:
        warnings.append(
            f"load generator behind: send lag p99 {lag['p99']:.1f} ms (> {SEND_LAG_WARN_MS} ms); latencies "
            "still count from the schedule"
        )
    if is_client_bound(cell):
        workers = cell.get("client_workers")
        who = f"the busiest of {len(workers)} client workers" if workers else "the harness"
        warnings.append(
            f"client-bound: {who} kept its event loop busy {client_busy_share(cell):.0%} of the cell"
            + _cpu_note(cell)
            + "; latencies include client-side queueing"
            + ("" if workers else " (--client-procs N spreads the client, docs/scale.md)")
        )
    return warnings


def gc_warnings(harness_gc: dict[str, Any] | None) -> list[str]:
    """The harness's collector paused the loop inside the measured window (compare/run/instruments/gcquiet.py) for >
    1 ms."""
    if not harness_gc or harness_gc["max_ms"] <= GC_PAUSE_WARN_MS:
        return []
    return [
        f"harness GC paused the loop: {harness_gc['collections']} collection(s) inside the measured window, the "
        f"longest {harness_gc['max_ms']:.1f} ms (> {GC_PAUSE_WARN_MS:g} ms; policy {harness_gc['policy']})"
    ]


def poll_warnings(polls: dict[str, Any] | None) -> list[str]:
    """The harness's telemetry polls (compare/run/instruments/observe.py) kept the engine answering for > 2% of the
    cell."""
    if not polls or polls["busy_share"] is None or polls["busy_share"] <= POLL_BUSY_WARN_SHARE:
        return []
    return [
        f"telemetry polls took {polls['busy_share']:.1%} of the cell ({polls['count']} polls every "
        f"{polls['interval_ms']:g} ms, p50 {polls['p50_ms']:.1f} ms): the engine spent that answering them; "
        "poll less often (http: --engine-arg metrics_interval_s=S, 0 for never)"
    ]


def _loop_figures(cell: dict[str, Any]) -> dict[str, Any]:
    """The busiest client loop's figures: the harness's own, or with client workers (--client-procs, --ray) the
    worker whose loop was busiest."""
    workers = [w for w in cell.get("client_workers") or () if _busy(w) is not None]
    if cell.get("client_workers"):
        return max(workers, key=_busy) if workers else {}
    return cell.get("harness") or {}


def _busy(figures: dict[str, Any]) -> float | None:
    """The loop's busy share (1 - selector waits / wall); the loop thread's CPU share where it was not measured
    (files from before it, loops without a Python selector)."""
    busy = figures.get("loop_busy_share")
    return busy if busy is not None else figures.get("loop_thread_cpu_share")


def client_busy_share(cell: dict[str, Any]) -> float | None:
    return _busy(_loop_figures(cell))


def _cpu_note(cell: dict[str, Any]) -> str:
    """Where the loop was busy but its thread got much less CPU, another process had its core."""
    figures = _loop_figures(cell)
    busy, cpu = figures.get("loop_busy_share"), figures.get("loop_thread_cpu_share")
    if busy is None or cpu is None or cpu >= busy - 0.1:
        return ""
    return f" (its thread ran {cpu:.0%} of it: something else had that core the rest)"


def is_client_bound(cell: dict[str, Any]) -> bool:
    share = client_busy_share(cell)
    return share is not None and share >= CLIENT_BOUND_SHARE


def shared_gpu_warning(start_together: dict[str, Any] | None) -> str | None:
    """Every cell of an engine released at a barrier says who else held the GPU (their memory is in its figures)."""
    if not start_together:
        return None
    others = (start_together.get("others") or {}).get("engines") or []
    if not others:
        return None
    listed = start_together["others"].get("gpu_processes") or []
    memory = (
        f"; at release NVML listed {sum(p['used_mib'] or 0 for p in listed):.0f} MiB in {len(listed)} GPU "
        f"process(es), these included"
        if listed
        else ""
    )
    return (
        f"shared GPU: started together with {', '.join(others)}, idle while this engine was measured; "
        f"GPU memory figures include the other engines{memory}"
    )
