"""The runner's own logic, driven with fake engines (named as fakes)."""

import asyncio

import pytest

from compare.results.recorder import engine_side
from compare.run.runner import CellRun, closed_loop, run_cell
from engines.base import Request
from tests.fakes import FakeEngine
from workloads.plan import CellPlan
from workloads.scenarios import CellSpec

pytestmark = [pytest.mark.unit, pytest.mark.exclusive]  # real timers: run alone


def requests(n, tokens=3, prefix="r"):
    return tuple(Request(f"{prefix}{i}", (1, 2), tokens, tokens) for i in range(n))


def plan(concurrency=2, n=6, warmups=2):
    spec = CellSpec("c", concurrency, 2, "en", None, n)
    return CellPlan(spec, requests(warmups, prefix="w"), requests(n), 2, 0)


def test_closed_loop_never_exceeds_the_concurrency_and_runs_every_request_once():
    engine = FakeEngine()
    records = asyncio.run(closed_loop(engine, requests(10), 3, timeout_s=10))
    assert engine.max_in_flight == 3
    assert sorted(r.id for r in records) == sorted(f"r{i}" for i in range(10))
    assert all(r.ok and r.output_tokens == 3 and r.chunk_tokens == [1, 1, 1] and len(r.chunk_ns) == 3 for r in records)


def test_a_timed_out_request_is_recorded_as_failed_and_its_stream_closed():
    engine = FakeEngine(hang_on="r1")
    records = asyncio.run(closed_loop(engine, requests(3), 1, timeout_s=0.2))
    by_id = {r.id: r for r in records}
    assert not by_id["r1"].ok and by_id["r1"].error.startswith("timeout")
    assert by_id["r0"].ok and by_id["r2"].ok
    assert engine.closed_streams == 3


def test_an_engine_exception_fails_only_that_request_and_keeps_its_partial_tokens():
    engine = FakeEngine(fail_on="r0")
    records = asyncio.run(closed_loop(engine, requests(2), 2, timeout_s=10))
    by_id = {r.id: r for r in records}
    assert by_id["r0"].error == "RuntimeError: engine fell over"
    assert by_id["r0"].output_tokens == 1
    assert by_id["r1"].ok


def test_warmups_run_first_are_stored_apart_and_the_cache_is_reset_around_them():
    engine = FakeEngine()
    cell = CellRun(plan())
    asyncio.run(run_cell(engine, cell, timeout_s=10))
    assert engine.calls[:4] == ["reset", "w0", "w1", "reset"]
    assert [w.id for w in cell.warmups] == ["w0", "w1"]
    assert sorted(r.id for r in cell.records) == [f"r{i}" for i in range(6)]
    assert cell.complete and [r["when"] for r in cell.cache_resets] == ["before warmups", "after warmups"]


def test_a_failed_cache_reset_is_recorded_not_hidden():
    cell = CellRun(plan())
    asyncio.run(run_cell(FakeEngine(reset_error="scheduler busy"), cell, timeout_s=10))
    assert cell.cache_resets[0] == {"when": "before warmups", "ok": False, "error": "RuntimeError: scheduler busy"}


def test_an_interrupted_cell_keeps_the_requests_that_finished():
    engine = FakeEngine(hang_on="r3")
    cell = CellRun(plan(concurrency=1, n=5, warmups=0))

    async def interrupt_later():
        task = asyncio.ensure_future(run_cell(engine, cell, timeout_s=60))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt_later())
    assert not cell.complete
    assert [r.id for r in cell.finished_records()] == ["r0", "r1", "r2"]


def test_engine_timestamps_become_offsets_with_a_delivery_lag():
    engine = engine_side(
        {"clock": "perf_counter", "timestamps_ns": {"first_token": 1_500}}, sent_ns=1_000, first_chunk_ns=700
    )
    assert engine["timestamps_ns"] == {"first_token": 500} and engine["clock_aligned"]
    assert engine["delivery_lag_ns"] == 200 and engine["clock_consistent"]
    late = engine_side(
        {"clock": "perf_counter", "timestamps_ns": {"first_token": 1_900}}, sent_ns=1_000, first_chunk_ns=700
    )
    assert late["clock_consistent"] is False


def test_stamps_on_an_unknown_clock_are_kept_unaligned():
    engine = engine_side({"clock": "wall", "timestamps_ns": {"first_token": 5}}, sent_ns=1_000, first_chunk_ns=700)
    assert engine == {"clock": "wall", "timestamps_ns": {"first_token": 5}, "clock_aligned": False}


def test_batch_engines_get_one_call_per_cell_and_records_without_token_times():
    from compare.run.runner import run_batch
    from tests.fakes import FakeBatchEngine

    engine = FakeBatchEngine()
    records = asyncio.run(run_batch(engine, requests(4, tokens=5), timeout_s=10))
    assert engine.batches == [4]
    assert all(r.ok and r.output_tokens == 5 and r.chunk_ns == [] and r.timing == "batch" for r in records)
    assert len({r.end_ns for r in records}) == 1 and records[0].ttft_ms is None and records[0].tpot_ms is None


def test_text_only_chunks_give_output_characters_where_the_cell_counts_them():
    """Ollama streams text without ids: the characters come from its text (the korean scenario's chars/s)."""
    from compare.results.recorder import StreamRecorder
    from engines.base import Chunk

    recorder = StreamRecorder(Request("r", (1,), 2, 2), origin_ns=0)
    for piece in ("안녕", "하세요"):
        recorder.on_chunk(Chunk(1, text=piece))
    assert recorder.finish(None, decode=lambda ids: "unused").output_chars == 5
    assert recorder.finish(None, decode=None).output_chars is None  # cells that do not count characters
