"""HTTP mode past one client process: the coordinator's split of a cell, client worker processes whose records
merge as one process writes them, Ray actors whose clock offsets are measured back, and the bad inputs.
Known answers come from a FAKE SSE server (tests/fake_sse_server.py) with a set inter-token latency."""

import asyncio
import json
import os
import signal
import socket
import sys

import numpy as np
import pytest

from compare.results.records import itl_samples_ns
from compare.run.clients.clientprocs import ClientPlan, run_client_procs
from compare.run.clients.rayclients import clock_offset
from compare.run.clients.shares import split_cell
from engines.base import Request
from workloads.cellplan import Conversation
from tests.bounds import below, near
from tests.fake_sse_server import FakeSseServer
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)

MS = 1_000_000


def requests(count: int, tokens: int = 20) -> tuple[Request, ...]:
    return tuple(Request(f"r{i}", (1, 2, 3), tokens, tokens) for i in range(count))


@pytest.mark.unit
def test_a_closed_loop_cell_deals_its_workers_and_requests_in_proportion():
    shares = split_cell(ClientPlan(requests(10), concurrency=5), 2)
    assert [s.concurrency for s in shares] == [3, 2]
    assert [len(s.indices) for s in shares] == [6, 4]  # 3:2, as the workers
    assert sorted(shares[0].indices + shares[1].indices) == list(range(10))
    assert [r.request_id for r in shares[1].requests] == [f"r{i}" for i in shares[1].indices]
    assert split_cell(ClientPlan(requests(4), concurrency=1), 3)[1:] == [None, None]  # c=1: one process


@pytest.mark.unit
def test_an_open_loop_cell_goes_round_robin_with_its_arrivals_and_its_cap_split():
    arrivals = tuple(i * 10 * MS for i in range(5))
    shares = split_cell(ClientPlan(requests(5), concurrency=0, arrivals_ns=arrivals), 2)
    assert [s.indices for s in shares] == [(0, 2, 4), (1, 3)]
    assert shares[1].arrivals_ns == (10 * MS, 30 * MS) and [s.concurrency for s in shares] == [0, 0]
    capped = split_cell(ClientPlan(requests(5), concurrency=1, arrivals_ns=arrivals), 2)
    assert capped[0].indices == (0, 1, 2, 3, 4) and capped[0].concurrency == 1 and capped[1] is None


@pytest.mark.unit
def test_conversations_are_dealt_whole():
    conversations = tuple(Conversation(i, ((1, 2), (3,)), (4, 4), (0,)) for i in range(3))
    shares = split_cell(ClientPlan(requests(6), concurrency=2, conversations=conversations), 2)
    assert [s.indices for s in shares] == [(0, 2), (1,)] and all(s.turns == 2 for s in shares)


@pytest.mark.unit
def test_the_clock_offset_comes_from_the_fastest_ping_and_is_within_half_its_round_trip():
    true_offset = 5_000_000_000
    samples = []
    for sent, rtt, remote_at in ((1000, 900, 0.9), (5000, 100, 0.3), (9000, 400, 0.5)):  # remote_at: where in the trip
        samples.append((sent, sent + int(remote_at * rtt) + true_offset, sent + rtt))
    offset, uncertainty, rtt = clock_offset(samples)
    assert rtt == 100 and uncertainty == 50
    assert abs(offset - true_offset) <= uncertainty


def _with_fake_server(run, interval_ms: float = 10.0, servers: list | None = None):
    """`run(engine_args)` against a FAKE SSE server in this process; `servers` receives it, for its arrivals."""

    async def go():
        server = FakeSseServer(1, interval_ms)
        if servers is not None:
            servers.append(server)
        await server.start()
        try:
            return await run({"endpoint": server.url})
        finally:
            await server.stop()

    return asyncio.run(go())


@pytest.mark.engine
@pytest.mark.exclusive  # the first wave's send times
def test_two_client_processes_report_the_servers_timings_and_merge_in_order():
    plan = ClientPlan(requests(8), concurrency=4)
    outcome = _with_fake_server(lambda args: run_client_procs(args, plan, 2))
    records = outcome.records
    assert [r.id for r in records] == [f"r{i}" for i in range(8)] and all(r.ok for r in records)
    itl_ms = np.concatenate([itl_samples_ns(r.chunk_ns, r.chunk_tokens) for r in records]) / MS
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.47 (headroom 0.77)
    near(np.median(itl_ms), 10.0, 2.0, "ITL p50 (ms), the server's true interval")
    first_wave = sorted(r.sent_ns for r in records)[:4]  # both processes start at the one origin
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 3.10 (headroom 0.87)
    below(max(first_wave) / MS, 20, 0.5, "first wave's send after the origin (ms)")  # a wrong origin: ~50 ms
    assert len(outcome.workers) == 2 and len({w["pid"] for w in outcome.workers} | {os.getpid()}) == 3
    assert all(0 < w["process_cpu_share"] < 1.5 and w["requests"] == 4 for w in outcome.workers)
    single = _with_fake_server(lambda args: run_client_procs(args, ClientPlan(requests(1), 1), 1)).records[0]
    assert records[0].to_json().keys() == single.to_json().keys()  # one schema, however many processes


@pytest.mark.engine
def test_an_open_loop_across_processes_sends_each_request_at_its_time():
    """One clock for all processes: the server (in this process) sees each request arrive at or after its scheduled
    time on the coordinator's clock, and soon after. A worker whose origin was wrong would be off by the start margin
    (50 ms: early, on its own receipt of the run; late, on its own start) or by whole arrival slots (50 ms apart)."""
    arrivals = tuple(i * 50 * MS for i in range(10))
    sent = tuple(Request(f"r{i}", (1, 2, 3, 100 + i), 5, 5) for i in range(10))  # the last prompt id names the request
    plan = ClientPlan(sent, concurrency=0, arrivals_ns=arrivals)
    servers: list = []
    outcome = _with_fake_server(lambda args: run_client_procs(args, plan, 2), 2.0, servers)
    seen_ns = {prompt[-1] - 100: arrived for arrived, prompt in servers[0].arrivals}
    assert all(r.ok and r.scheduled_ns == arrivals[i] for i, r in enumerate(outcome.records))
    assert sorted(seen_ns) == list(range(10))
    for i, record in enumerate(outcome.records):
        late_ns = seen_ns[i] - (outcome.origin_ns + arrivals[i])  # on the coordinator's clock, as the server saw it
        assert late_ns >= record.send_lag_ns >= 0  # stamped before it went, and it never went early (exact: one clock)
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 6.148 (headroom 0.77)
        below(late_ns / MS, 25, 0.5, "arrival at the server after its scheduled time (ms)")
    assert all(w["send_lag_ms_max"] is not None for w in outcome.workers)


def cli_against_fake_server(args: list[str], model_cache, out):
    """`python -m compare --engine http` in a child process, against a FAKE SSE server (2 ms per token) here."""
    from tests.test_http_chunks import _run_cli_pinned

    async def go():
        server = FakeSseServer(1, 2.0)
        await server.start()
        try:
            endpoint = ["--engine", "http", "--engine-arg", f"endpoint={server.url}"]
            return await asyncio.to_thread(_run_cli_pinned, endpoint + args, model_cache, out, None)
        finally:
            await server.stop()

    return asyncio.run(go())


@pytest.mark.engine
def test_the_cli_runs_two_client_processes_and_records_them(model_cache, tmp_path):
    result = cli_against_fake_server(
        ["--scenario", "concurrent", "--quick", "--concurrency", "4", "--output-tokens", "16", "--client-procs", "2"],
        model_cache,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["clients"]["placement"] == "processes" and doc["clients"]["num_workers"] == 2
    (cell,) = doc["cells"]
    assert len(cell["client_workers"]) == 2 and cell["summary"]["num_ok"] == cell["summary"]["num_requests"]
    assert "clients: 2 worker(s) as processes" in result.stdout


@pytest.mark.unit
def test_client_processes_in_process_mode_are_a_usage_error(cli):  # noqa: F811
    assert_usage_error(cli("--engine", "null", "--client-procs", "2"), "--client-procs works in HTTP mode only")
    assert_usage_error(cli("--engine", "null", "--client-procs", "0", "--mode", "http"), "give 1 or more")


@pytest.mark.unit
def test_ray_without_ray_or_with_no_head_there_is_a_usage_error(cli, monkeypatch):  # noqa: F811
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert_usage_error(cli("--engine", "vllm", "--mode", "http", "--ray", "auto"), "pip install -e '.[ray]'")
    monkeypatch.setitem(sys.modules, "ray", object())  # installed: the address is checked before Ray's own retries
    assert_usage_error(
        cli("--engine", "vllm", "--mode", "http", "--ray", f"127.0.0.1:{port}"), "no Ray head answers there"
    )
    assert_usage_error(cli("--engine", "vllm", "--ray", "auto"), "--ray works in HTTP mode only")


@pytest.mark.engine
@pytest.mark.exclusive  # the first wave's send times
def test_ray_actors_measure_an_injected_clock_skew_back_and_merge_their_records(ray_head):
    from compare.run.clients.rayclients import RayClientPool

    skew_ns = 3_000_000_000  # actor 1's clock runs 3 s ahead

    async def run(args):
        pool = RayClientPool(args, 2, ray_head, clock_skews_ns=[0, skew_ns])
        await pool.start()
        try:
            return pool.info, await pool.run(ClientPlan(requests(8), concurrency=4))
        finally:
            await pool.stop()

    info, outcome = _with_fake_server(run)
    for worker, skew in zip(info, (0, skew_ns)):
        assert abs(worker["clock_offset_ns"] - skew) <= worker["clock_offset_uncertainty_ns"], worker
    records = outcome.records
    assert [r.id for r in records] == [f"r{i}" for i in range(8)] and all(r.ok for r in records)
    first_wave = sorted(r.sent_ns for r in records)[:4]
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 3.66 (headroom 0.95)
    below(max(first_wave) / MS, 50, 1, "first wave's send after the origin (ms)")  # unconverted: 3 s off
    itl_ms = np.concatenate([itl_samples_ns(r.chunk_ns, r.chunk_tokens) for r in records]) / MS
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.47 (headroom 0.76)
    near(np.median(itl_ms), 10.0, 2.0, "ITL p50 (ms), the server's true interval")
    assert {w["clock_offset_ns"] for w in outcome.workers} == {w["clock_offset_ns"] for w in info}


@pytest.mark.engine
def test_the_cli_places_its_client_workers_on_ray_and_records_their_clocks(ray_head, model_cache, tmp_path):
    result = cli_against_fake_server(
        ["--scenario", "smoke", "--client-procs", "2", "--ray", ray_head], model_cache, tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["clients"]["placement"] == "ray" and doc["clients"]["ray_address"] == ray_head
    assert all(
        abs(w["clock_offset_ns"]) <= w["clock_offset_uncertainty_ns"] for w in doc["clients"]["workers"]
    )  # one host
    assert all(cell["summary"]["num_ok"] == cell["summary"]["num_requests"] for cell in doc["cells"])


@pytest.mark.engine
def test_a_ray_actor_killed_mid_cell_fails_only_its_share_on_record(ray_head):
    """The same fault on Ray: an actor that dies (or a lost node) raises for its call; its share is recorded failed."""
    from compare.run.clients.rayclients import RayClientPool
    from tests.test_faults import _fake_sse_server_process

    server, url = _fake_sse_server_process(interval_ms=20.0)

    async def run():
        pool = RayClientPool({"endpoint": url, "server": "vllm"}, 2, ray_head)
        await pool.start()
        try:
            plan = ClientPlan(tuple(Request(f"r{i}", (1,) * 16, 64, 64) for i in range(16)), concurrency=4)
            running = asyncio.ensure_future(pool.run(plan))
            await asyncio.sleep(1.5)
            os.kill(pool.info[1]["pid"], signal.SIGKILL)
            first = await running
            second = await pool.run(
                ClientPlan(tuple(Request(f"s{i}", (1,) * 16, 8, 8) for i in range(4)), concurrency=2)
            )
            return first, second
        finally:
            await pool.stop()

    try:
        first, second = asyncio.run(run())
    finally:
        server.terminate()
    failed = [r for r in first.records if not r.ok]
    assert len(failed) == 8 and all("died mid-cell" in r.error for r in failed)
    assert sum(r.ok for r in first.records) == 8 and first.workers[1].get("died")
    assert all(r.ok for r in second.records) and len(second.workers) == 1
