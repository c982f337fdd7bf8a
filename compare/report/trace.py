"""One cell on one clock, as Chrome Trace Event JSON (Perfetto, chrome://tracing): `python -m compare.report DIR
--trace [RUN:CELL]`. Everything comes from the results file alone; times are microseconds from the cell's origin
(the first measured send).

- requests (one track each): waiting for the engine (send -> queued -> scheduled, where the engine stamps them on
  our clock), prefill up to the first token, decode up to the end; every chunk an instant with its token count;
- engine steps: each step record a slice (from the record before it), with running, scheduled and cached tokens,
  preemptions and KV use as args, and the same figures as counter tracks;
- harness: the measured window (loop busy share, client-bound or not, the host profile's phase shares as args), GC
  pauses where recorded, the cache reset before the window;
- warmups: on their own track, shifted to end before the window (their own clock; the gap is not recorded).

Past MAX_CHUNK_EVENTS chunk instants, every k-th is kept and `otherData.decimated` says so."""

from __future__ import annotations

import math
from typing import Any

from compare.analysis.checks import is_client_bound

MAX_CHUNK_EVENTS = 200_000
REQUESTS, ENGINE, HARNESS, WARMUPS = 1, 2, 3, 4
COUNTERS = ("running", "waiting", "kv_cache_usage", "preempted")


def _us(ns: float) -> float:
    return round(ns / 1e3, 3)


def _meta(pid: int, name: str, tid: int | None = None) -> dict[str, Any]:
    if tid is None:
        return {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}}
    return {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}


def _slice(pid: int, tid: int, name: str, start_ns: float, end_ns: float, args: dict | None = None) -> dict:
    event = {
        "ph": "X",
        "name": name,
        "pid": pid,
        "tid": tid,
        "ts": _us(start_ns),
        "dur": _us(max(0, end_ns - start_ns)),
    }
    return {**event, "args": args} if args else event


def request_events(record, pid: int, tid: int, shift_ns: int = 0, every: int = 1) -> list[dict[str, Any]]:
    """One request's track: its phases as slices, its chunks as instants (every `every`-th), its end."""
    sent = record.sent_ns + shift_ns
    events = [_meta(pid, record.id, tid)]
    chunks = [sent + offset for offset in record.chunk_ns]
    stamps = (record.engine or {}).get("timestamps_ns") if (record.engine or {}).get("clock_aligned") else None
    waited_until = sent
    if stamps and stamps.get("queued") is not None and stamps.get("scheduled") is not None:
        queued, scheduled = sent + stamps["queued"], sent + stamps["scheduled"]
        events += [_slice(pid, tid, "to the engine", sent, queued), _slice(pid, tid, "queued", queued, scheduled)]
        waited_until = scheduled
    if record.scheduled_ns is not None and record.scheduled_ns + shift_ns < sent:  # open loop: sent late
        events.append(_slice(pid, tid, "send lag", record.scheduled_ns + shift_ns, sent))
    if chunks:
        events.append(_slice(pid, tid, "prefill", waited_until, chunks[0], {"prompt_tokens": record.prompt_tokens}))
    end = sent + record.end_ns if record.end_ns is not None else (chunks[-1] if chunks else sent)
    if chunks:
        events.append(_slice(pid, tid, "decode", chunks[0], end, {"output_tokens": record.output_tokens}))
    for index in range(0, len(chunks), every):
        tokens = record.chunk_tokens[index] if index < len(record.chunk_tokens) else None
        events.append(
            {
                "ph": "i",
                "s": "t",
                "name": "chunk",
                "pid": pid,
                "tid": tid,
                "ts": _us(chunks[index]),
                "args": {"tokens": tokens},
            }
        )
    outcome = {"finish_reason": record.finish_reason, "error": record.error}
    events.append({"ph": "i", "s": "t", "name": "end", "pid": pid, "tid": tid, "ts": _us(end), "args": outcome})
    return events


def step_events(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine's step records as slices (engine steps) or, for polled snapshots, counters only."""
    telemetry = cell.get("telemetry") or {}
    rows = telemetry.get("rows") or []
    if not rows:
        return []
    is_steps = telemetry.get("source") == "engine steps"
    events = [_meta(ENGINE, "engine" if is_steps else f"engine ({telemetry.get('source')})")]
    if is_steps:
        events.append(_meta(ENGINE, "steps", 1))
    previous_ns = (cell.get("admission") or {}).get("released_ns")
    for row in rows:
        if is_steps and previous_ns is not None:
            prefill, decode = row.get("prefill_tokens", 0), row.get("decode_tokens", 0)
            kind = "mixed" if prefill and decode else "prefill" if prefill else "decode" if decode else "step"
            args = {k: v for k, v in row.items() if k != "t_ns" and not isinstance(v, list)}
            events.append(_slice(ENGINE, 1, kind, previous_ns, row["t_ns"], args))
        previous_ns = row["t_ns"]
        figures = {name: row[name] for name in COUNTERS if isinstance(row.get(name), (int, float))}
        scheduled = row.get("prefill_tokens", 0) + row.get("decode_tokens", 0)
        if scheduled:
            figures["scheduled_tokens"] = scheduled
        for name, value in figures.items():
            events.append({"ph": "C", "name": name, "pid": ENGINE, "ts": _us(row["t_ns"]), "args": {name: value}})
    return events


def harness_events(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured window with the harness's own figures, GC pauses and the cache reset before the window."""
    events = [_meta(HARNESS, "harness"), _meta(HARNESS, "window", 1), _meta(HARNESS, "gc pauses", 2)]
    harness = cell.get("harness") or {}
    args = {k: v for k, v in harness.items() if isinstance(v, (int, float))}
    args["client_bound"] = is_client_bound(cell)
    for process in (cell.get("host_profile") or {}).get("processes") or []:
        for name, figures in (process.get("phases") or {}).items():
            if figures.get("share"):
                args[f"host {process.get('role')} {name}"] = round(figures["share"], 4)
    if (cell.get("profiled") or {}).get("started"):  # the engine's profiler ran over this window
        args["engine profiler trace"] = str(cell["profiled"].get("trace"))
    if cell.get("nvtx"):  # NVTX ranges over this window and each request (nsys)
        args["nvtx"] = f"{cell['nvtx'].get('domain')}: {cell['nvtx'].get('cell_range')}"
    wall_ns = (cell.get("summary") or {}).get("wall_s", 0) * 1e9
    events.append(_slice(HARNESS, 1, "measured", 0, wall_ns, args))
    after = [r for r in cell.get("cache_resets", []) if r.get("when") == "after warmups" and r.get("duration_ns")]
    for reset in after:
        events.append(_slice(HARNESS, 1, "cache reset", -reset["duration_ns"], 0, {"ok": reset.get("ok")}))
    for pause in (cell.get("harness_gc") or {}).get("pauses") or []:
        start = pause["at_ns"]
        events.append(_slice(HARNESS, 2, f"gc gen {pause['generation']}", start, start + pause["ms"] * 1e6))
    return events


def cell_trace(run, cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's whole trace: requests, engine steps, harness, warmups (shifted before the window)."""
    records = sorted(cell["requests"], key=lambda r: r.sent_ns)
    num_chunks = sum(len(r.chunk_ns) for r in records)
    every = max(1, math.ceil(num_chunks / MAX_CHUNK_EVENTS))
    events = [_meta(REQUESTS, "requests")]
    for index, record in enumerate(records, start=1):
        events += request_events(record, REQUESTS, index, every=every)
    events += step_events(cell) + harness_events(cell)
    warmups = [w for w in cell.get("warmups", []) if w.end_ns is not None]
    if warmups:
        reset_ns = sum(
            r.get("duration_ns") or 0 for r in cell.get("cache_resets", []) if r.get("when") == "after warmups"
        )
        shift = -(max(w.sent_ns + w.end_ns for w in warmups) + reset_ns)
        events.append(_meta(WARMUPS, "warmups (own clock, shifted to end before the window)"))
        for index, record in enumerate(warmups, start=1):
            events += request_events(record, WARMUPS, index, shift)
    other = {
        "run": run.path.name,
        "engine": run.doc["engine"]["name"],
        "model": run.doc["model"].get("spec"),
        "scenario": run.doc["scenario"]["name"],
        "cell": cell["cell_id"],
        "clock": "microseconds from the cell's first measured send (perf_counter)",
        "num_requests": len(records),
        "num_chunks": num_chunks,
    }
    if every > 1:
        other["decimated"] = f"chunk instants: 1 in {every} of {num_chunks} kept (limit {MAX_CHUNK_EVENTS})"
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


PHASES = {"X", "i", "C", "M"}


def trace_problems(trace: Any) -> list[str]:
    """The project's own reader of what it writes (no validator installs here): the Trace Event Format's rules for
    the event kinds used: complete slices, instants, counters, metadata."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ["not an object with a traceEvents list"]
    problems = []
    for index, event in enumerate(trace["traceEvents"]):
        where = f"event {index} ({event.get('ph')} {event.get('name')})"
        if event.get("ph") not in PHASES or not isinstance(event.get("name"), str):
            problems.append(f"{where}: ph must be one of {sorted(PHASES)} and name a string")
            continue
        if not isinstance(event.get("pid"), int) or ("tid" in event and not isinstance(event["tid"], int)):
            problems.append(f"{where}: pid and tid must be integers")
        if event["ph"] != "M" and not isinstance(event.get("ts"), (int, float)):
            problems.append(f"{where}: ts must be a number (microseconds)")
        if event["ph"] == "X" and not (isinstance(event.get("dur"), (int, float)) and event["dur"] >= 0):
            problems.append(f"{where}: a complete event needs dur >= 0")
        if event["ph"] == "i" and event.get("s") not in ("g", "p", "t"):
            problems.append(f"{where}: an instant's scope s must be g, p or t")
        if event["ph"] == "C" and not all(
            isinstance(v, (int, float)) for v in (event.get("args") or {None: None}).values()
        ):
            problems.append(f"{where}: a counter's args must be numbers")
        if event["ph"] == "M" and "name" not in (event.get("args") or {}):
            problems.append(f"{where}: a metadata event names its process or thread in args.name")
    return problems
