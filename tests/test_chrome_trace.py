"""A cell as Chrome Trace Event JSON (compare/report/trace.py), from FAKE records whose times are known: every phase,
chunk, step, counter, GC pause and warmup lands where the records put it, the project's own reader accepts the
format, and past the limit chunk instants are decimated and the trace says so."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from compare.report import trace
from compare.report.trace import cell_trace, trace_problems
from compare.results.records import RequestRecord

pytestmark = pytest.mark.unit
MS = 1_000_000


def _record(index: int, sent_ms: float, chunks_ms: list[float], end_ms: float, engine: dict | None = None):
    return RequestRecord(
        id=f"r{index}",
        prompt_tokens=64,
        target_output_tokens=len(chunks_ms),
        sent_ns=int(sent_ms * MS),
        end_ns=int(end_ms * MS),
        chunk_ns=[int(c * MS) for c in chunks_ms],  # after the send
        chunk_tokens=[1] * len(chunks_ms),
        output_tokens=len(chunks_ms),
        finish_reason="length",
        engine=engine,
    )


def _fake_cell() -> dict:
    stamps = {"queued": 1 * MS, "scheduled": 2 * MS, "first_token": 9 * MS}  # after the send
    rows = [  # engine steps on the cell's clock: a prefill, then two decode steps
        {"t_ns": 10 * MS, "running": 2, "prefill_tokens": 128, "decode_tokens": 0, "kv_cache_usage": 0.1},
        {"t_ns": 15 * MS, "running": 2, "prefill_tokens": 0, "decode_tokens": 2, "kv_cache_usage": 0.2},
        {"t_ns": 21 * MS, "running": 0, "prefill_tokens": 0, "decode_tokens": 2, "kv_cache_usage": 0.2},
    ]
    return {
        "cell_id": "c2-in64",
        "requests": [
            _record(0, 0.0, [10, 15, 21], 21.5, {"clock_aligned": True, "timestamps_ns": stamps}),
            _record(1, 0.5, [9.5, 14.5, 20.5], 21.0),
        ],
        "warmups": [_record(9, 0.0, [5, 8], 8.5)],
        "cache_resets": [{"when": "after warmups", "ok": True, "duration_ns": 2 * MS}],
        "telemetry": {"source": "engine steps", "rows": rows},
        "admission": {"together": True, "released_ns": 1 * MS},
        "harness": {"loop_busy_share": 0.2},
        "harness_gc": {"pauses": [{"at_ns": 12 * MS, "ms": 1.5, "generation": 2}]},
        "summary": {"wall_s": 0.0215},
        "warnings": [],
    }


FAKE_RUN = SimpleNamespace(
    path=Path("vllm_concurrent_x.json"),
    doc={"engine": {"name": "vllm"}, "model": {"spec": "synthetic:tiny-llama3"}, "scenario": {"name": "concurrent"}},
)


def _named(events: list[dict], name: str, pid: int | None = None) -> list[dict]:
    return [e for e in events if e["name"] == name and (pid is None or e["pid"] == pid)]


def test_a_fake_cells_trace_puts_every_phase_chunk_and_step_where_its_records_do():
    events = cell_trace(FAKE_RUN, _fake_cell())["traceEvents"]
    first = [e for e in events if e["pid"] == trace.REQUESTS and e.get("tid") == 1]
    slices = {e["name"]: (e["ts"], e["dur"]) for e in first if e["ph"] == "X"}
    # engine stamps: on the engine 1 ms after the send, scheduled at 2 ms; first token received at 10 ms, end 21.5
    assert slices == {
        "to the engine": (0, 1000),
        "queued": (1000, 1000),
        "prefill": (2000, 8000),
        "decode": (10000, 11500),
    }
    assert [e["ts"] for e in first if e["name"] == "chunk"] == [10000, 15000, 21000]
    second = [e for e in events if e["pid"] == trace.REQUESTS and e.get("tid") == 2 and e["ph"] == "X"]
    assert {e["name"]: e["ts"] for e in second} == {"prefill": 500, "decode": 10000}  # no stamps: prefill from send
    steps = [e for e in events if e["pid"] == trace.ENGINE and e["ph"] == "X"]
    # each step from the record before it, the first from the admission's resume at 1 ms
    assert [(e["name"], e["ts"], e["dur"]) for e in steps] == [
        ("prefill", 1000, 9000),
        ("decode", 10000, 5000),
        ("decode", 15000, 6000),
    ]
    assert [e["args"]["kv_cache_usage"] for e in _named(events, "kv_cache_usage")] == [0.1, 0.2, 0.2]
    assert [e["args"]["scheduled_tokens"] for e in _named(events, "scheduled_tokens")] == [128, 2, 2]
    (pause,) = _named(events, "gc gen 2")
    assert (pause["ts"], pause["dur"]) == (12000, 1500)
    (reset,) = _named(events, "cache reset")
    assert (reset["ts"], reset["dur"]) == (-2000, 2000)
    (window,) = _named(events, "measured")
    assert window["dur"] == 21500 and window["args"]["loop_busy_share"] == 0.2
    warmup = [e for e in events if e["pid"] == trace.WARMUPS and e["name"] == "end"]
    assert warmup[0]["ts"] == -2000  # shifted to end where the cache reset before the window begins
    assert trace_problems(json.loads(json.dumps(cell_trace(FAKE_RUN, _fake_cell())))) == []


def test_the_reader_refuses_what_the_format_forbids():
    good = {"ph": "X", "name": "step", "pid": 2, "tid": 1, "ts": 0, "dur": 5}
    assert trace_problems({"traceEvents": [good]}) == []
    for broken in ({**good, "dur": -1}, {**good, "ph": "Q"}, {**good, "ts": "0"}, {**good, "ph": "i"}):
        assert trace_problems({"traceEvents": [broken]}), broken
    assert trace_problems([good]) == ["not an object with a traceEvents list"]


def test_past_the_limit_chunk_instants_are_decimated_and_the_trace_says_so(monkeypatch):
    monkeypatch.setattr(trace, "MAX_CHUNK_EVENTS", 4)
    built = cell_trace(FAKE_RUN, _fake_cell())
    chunks = _named(built["traceEvents"], "chunk", trace.REQUESTS)
    assert len(chunks) == 4  # 6 chunks, every 2nd kept: 2 per request
    assert "1 in 2 of 6" in built["otherData"]["decimated"]


def test_the_report_writes_a_valid_trace_per_cell_and_refuses_a_cell_it_does_not_have(tmp_path, config_only_model):
    from compare.report.command import main as report_main
    from tests.test_report import null_run

    run = null_run(tmp_path / "runs", config_only_model, "2", output_tokens=8, repetitions=4)
    assert report_main([str(run), "--out", str(tmp_path / "report"), "--trace"]) == 0
    (path,) = (tmp_path / "report" / "traces").glob("*.json")
    written = json.loads(path.read_text())
    assert trace_problems(written) == [] and written["otherData"]["num_requests"] == 4
    assert len(_named(written["traceEvents"], "chunk")) == 4 * 8 + 8  # every measured chunk, and the warmup's 8
    assert report_main([str(run), "--out", str(tmp_path / "report"), "--trace", "null:c99"]) == 2
