"""HTTP mode stamps what one read of the socket brought as one chunk, and a harness that is itself the
bottleneck is warned about. Known answers come from a FAKE SSE server (tests/fake_sse_server.py) whose
true inter-token latency and tokens per write are set by the test."""

import asyncio
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from compare.analysis.checks import CLIENT_BOUND_SHARE, observed_warnings
from compare.analysis.cell import recompute
from compare.results.records import itl_samples_ns
from engines.base import Request
from engines.http_openai import HttpCompletionsEngine, _StreamTally
from engines.servers import ServerCommand, ServerProcess
from engines.sse_client import ChunkedDecoder, MalformedStream, SseSplitter
from tests.fake_sse_server import FakeSseServer
from tests.bounds import above, below, near

FAKE_SERVER = os.path.join(os.path.dirname(__file__), "fake_sse_server.py")


@pytest.mark.unit
def test_the_splitter_keeps_a_partial_event_for_the_next_read_and_drops_comments():
    splitter = SseSplitter()
    assert splitter.feed(b': ping\n\ndata: {"a": 1}\n\ndata: {"b"') == [b'{"a": 1}']
    assert splitter.feed(b": 2}\r\n\r\nid: 3\ndata: x\ndata: y\n\n") == [b'{"b": 2}', b"x\ny"]
    assert splitter.feed(b"data: 1\n\nthis is not an SSE line\n\ndata: 2\n\n") == [b"1"]  # what came before it counts
    assert isinstance(splitter.error, MalformedStream) and "this is not an SSE line" in str(splitter.error)


@pytest.mark.unit
def test_the_events_of_one_read_become_one_chunk_and_non_token_events_count_nothing():
    tally = _StreamTally()
    role_only = b'{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}'
    assert tally.read([role_only]) is None  # no token: no chunk, so no stamp
    chunk = tally.read(
        [
            b'{"choices": [{"text": "a", "token_ids": [1]}]}',
            b'{"choices": [{"text": "bc", "token_ids": [2, 3]}]}',
            b'{"choices": [{"text": "", "token_ids": [], "finish_reason": "length"}]}',
        ]
    )
    assert (chunk.num_new_tokens, chunk.token_ids, chunk.text, chunk.finish_reason) == (3, [1, 2, 3], "abc", "length")
    assert tally.read([b'{"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}', b"[DONE]"]) is None
    metrics = tally.metrics()
    assert (metrics["sse_events"], metrics["sse_reads"], metrics["token_counting"]) == (6, 3, "token_ids")
    assert metrics["token_count_mismatches"] == []


@pytest.mark.unit
def test_text_only_events_count_one_token_each_but_a_text_less_finish_counts_none():
    tally = _StreamTally()
    chunk = tally.read(
        [
            b'{"choices": [{"text": "a"}]}',
            b'{"choices": [{"text": ""}]}',
            b'{"choices": [{"text": "", "finish_reason": "stop"}]}',
        ]
    )
    assert chunk.num_new_tokens == 2 and tally.finish == "stop"  # "" mid-stream: a partial character, still a token


def _measure(
    tokens_per_write: int,
    interval_ms: float,
    num_tokens: int = 40,
    comments: bool = False,
    write_per_event: bool = False,
):
    """Two requests at concurrency 1 through HTTP mode against the fake server, in this process."""
    from compare.run.runner import closed_loop

    async def go():
        server = FakeSseServer(tokens_per_write, interval_ms, comments, write_per_event)
        await server.start()
        engine = HttpCompletionsEngine(None, {"endpoint": server.url})
        await engine.start()
        try:
            requests = tuple(Request(f"r{i}", (1, 2, 3), num_tokens, num_tokens) for i in range(2))
            return await closed_loop(engine, requests, 1, timeout_s=30)
        finally:
            await engine.stop()
            await server.stop()

    return asyncio.run(go())


@pytest.mark.unit
@pytest.mark.parametrize("tokens_per_write", [1, 4])
def test_http_itl_is_the_servers_interval_whether_events_come_alone_or_k_to_a_write(tokens_per_write):
    interval_ms = 10.0
    records = _measure(tokens_per_write, interval_ms, comments=True)
    assert all(r.ok and r.output_tokens == 40 for r in records)
    itl_ms = np.concatenate([itl_samples_ns(r.chunk_ns, r.chunk_tokens) for r in records]) / 1e6
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): [1] 10.66 (headroom 0.67), [4] 9.889 (headroom 0.94)
    near(np.median(itl_ms), interval_ms, 0.2 * interval_ms, "ITL p50 (ms)")  # per read, not per event: 0 and 40 ms
    sizes = [size for r in records for size in r.chunk_tokens]
    assert np.median(sizes) == tokens_per_write  # one chunk per write, not one per event
    for r in records:
        assert r.engine["sse_reads"] <= r.engine["sse_events"]
        assert r.engine["sse_events"] == 40 + 4  # tokens, role-only, finish, usage, [DONE]; none for the comment
        assert r.prompt_tokens_reported == 3 and r.finish_reason == "length"


@pytest.mark.unit
def test_an_instant_server_writing_each_event_alone_gives_the_client_far_fewer_events_per_read():
    """The client ceiling's two cases (benchmarks/http_client_ceiling.py): one write per response, one per event."""
    whole, alone = _measure(1, 0, num_tokens=128), _measure(1, 0, num_tokens=128, write_per_event=True)
    assert all(r.ok and r.output_tokens == 128 for r in whole + alone)
    per_read = [
        sum(r.engine["sse_events"] for r in rs) / sum(r.engine["sse_reads"] for r in rs) for rs in (whole, alone)
    ]
    assert per_read[0] > 50 and per_read[1] < per_read[0] / 4


@pytest.mark.unit
def test_a_cell_busy_past_the_threshold_is_client_bound_and_the_mark_survives_recompute():
    def cell(busy, cpu=None):
        return {
            "summary": {},
            "harness": {"loop_busy_share": busy, "loop_thread_cpu_share": busy if cpu is None else cpu},
        }

    assert observed_warnings(cell(CLIENT_BOUND_SHARE - 0.01)) == []
    (warning,) = observed_warnings(cell(0.97))
    assert warning == (
        "client-bound: the harness kept its event loop busy 97% of the cell; latencies include client-side "
        "queueing (--client-procs N spreads the client, docs/scale.md)"
    )
    (shared_core,) = observed_warnings(cell(0.97, cpu=0.5))  # busy but preempted: still the bottleneck, and said so
    assert "busy 97% of the cell (its thread ran 50% of it: something else had that core the rest)" in shared_core
    assert observed_warnings(cell(0.5, cpu=0.97)) == []  # CPU share alone no longer decides
    old_file = {"summary": {}, "harness": {"loop_thread_cpu_share": 0.97}}  # before loop_busy_share: the CPU share
    assert observed_warnings(old_file)[0].startswith("client-bound: the harness kept its event loop busy 97%")
    from tests.fakes import record

    stored = {
        "engine": {"capabilities": {}},
        "cells": [
            {
                **cell(0.97),
                "requests": [record([1, 2, 3])],
                "config": {"prompt_mode": "distinct", "concurrency": 1},
                "cache_resets": [],
            }
        ],
    }
    assert recompute(stored)["cells"][0]["warnings"][-1].startswith(
        "client-bound: the harness kept its event loop busy 97%"
    )


@pytest.mark.unit
def test_the_loop_wait_counter_counts_selector_waits_and_nothing_while_the_loop_runs_code():
    from compare.run.instruments.loopwaits import loop_waits, waited_ns

    async def go():
        waits = loop_waits()
        assert loop_waits() is waits  # installed once per loop
        before = waited_ns()
        await asyncio.sleep(0.05)
        slept = waited_ns() - before
        before = waited_ns()
        deadline = time.perf_counter() + 0.05
        while time.perf_counter() < deadline:  # 50 ms of code, no await: the loop never reaches its selector
            pass
        return slept, waited_ns() - before

    slept_ns, spun_ns = asyncio.run(go())
    assert slept_ns >= 49_000_000  # a sleep is a wait in the selector: load can only lengthen it (lower bound)
    assert spun_ns == 0  # no select ran: exact, whatever the host


def _run_cli_pinned(args, cache, out, core):
    from tests.conftest import ROOT

    env = dict(os.environ, ENGINEBENCH_CACHE=str(cache), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "compare", *args, "--out", str(out)]
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, preexec_fn=pin)


def _cells(out):
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())["cells"]


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.engine
@pytest.mark.exclusive  # the server needs its own core, so that it cannot be the bottleneck
def test_an_instant_server_at_high_concurrency_makes_the_cell_client_bound_even_on_a_shared_core(model_cache, tmp_path):
    """Client-bound by construction: an instant server on its own core writes each 1024-token response in one write
    (it does ~nothing per token), while the client parses 1024 SSE events per response; the client's core is shared
    with a CPU hog, as a neighbour would share it. The verdict must come from the loop's waits, not from the CPU its
    thread got: the loop thread's CPU share here is about half, and before the busy share that read not client-bound.
    The server's CPU over the whole run (which holds the cell) is measured against the cell's wall time: under half its
    core, so it was not the bottleneck."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores: one for the server, one for the client and the hog")
    server_core, client_core = cores[-1], cores[0]
    hog = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.sched_setaffinity(0, {client_core})
    )

    async def go():
        command = ServerCommand(
            "fake-sse", (sys.executable, FAKE_SERVER, "--port", "{port}", "--interval-ms", "0"), "/health"
        )
        async with ServerProcess(command, "m", tmp_path / "fake.log", cpus={server_core}) as server:
            server_cpu0 = _cpu_s(server.process.pid)
            result = await asyncio.to_thread(
                _run_cli_pinned,
                [
                    "--engine",
                    "http",
                    "--engine-arg",
                    f"endpoint={server.url}",
                    "--scenario",
                    "concurrent",
                    "--concurrency",
                    "64",
                    "--num-requests",
                    "256",
                    "--input-tokens",
                    "32",
                    "--output-tokens",
                    "1024",
                    "--warmups",
                    "0",
                ],
                model_cache,
                tmp_path / "out",
                client_core,
            )
            return result, _cpu_s(server.process.pid) - server_cpu0

    try:
        result, server_cpu_s = asyncio.run(go())
    finally:
        hog.kill()
    assert result.returncode == 0, result.stderr[-2000:]
    (cell,) = _cells(tmp_path / "out")
    harness = cell["harness"]
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 0.05664 (headroom 0.99)
    below(server_cpu_s / harness["wall_s"], 0.5, 0.05, "the server's CPU share of the cell")  # it had time to spare
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 0.993 (headroom 0.95)
    above(harness["loop_busy_share"], CLIENT_BOUND_SHARE, 1.0, "the harness loop's busy share")
    assert any(w.startswith("client-bound: the harness kept its event loop busy") for w in cell["warnings"]), harness
    assert "(client-bound)" in result.stdout  # marked in the printed table


@pytest.mark.engine
def test_a_slow_engine_at_low_load_is_not_client_bound(model_cache, tmp_path):
    result = _run_cli_pinned(
        ["--engine", "null", "--engine-arg", "interval_ms=20", "--scenario", "smoke", "--concurrency", "1"],
        model_cache,
        tmp_path,
        None,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (cell,) = _cells(tmp_path)
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 0.034 (headroom 0.99)
    below(cell["harness"]["loop_busy_share"], 0.5, 0.03, "the harness loop's busy share")  # it waits 20 ms per token
    assert not any(w.startswith("client-bound") for w in cell["warnings"])


@pytest.mark.unit
def test_the_chunked_decoder_takes_chunks_split_anywhere_and_ends_after_the_trailer():
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    for cut in range(1, len(body)):  # every split into two reads
        decoder = ChunkedDecoder()
        assert decoder.feed(body[:cut]) + decoder.feed(body[cut:]) == b"hello, world"
        assert decoder.done and decoder.leftover == b""
    one_by_one = ChunkedDecoder()
    assert b"".join(one_by_one.feed(body[i : i + 1]) for i in range(len(body))) == b"hello, world" and one_by_one.done
    with pytest.raises(MalformedStream, match="bad chunk size"):
        ChunkedDecoder().feed(b"zz\r\nhello\r\n")
    with pytest.raises(MalformedStream, match="does not end in CRLF"):
        ChunkedDecoder().feed(b"2\r\nhiXX")
