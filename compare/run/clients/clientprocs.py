"""HTTP mode past one client process: the measured requests of a cell split over N worker processes, each
with its own event loop and connection pool, their records merged into one list as one process writes it.

The coordinator owns the schedule. It splits the cell (compare/run/clients/shares.py), and gives every worker the
same origin: on one host every process stamps on CLOCK_MONOTONIC (`perf_counter_ns`), so records from
different processes are offsets from one time and merge as they are. Across hosts (Ray,
compare/run/clients/rayclients.py) each worker's clock offset is measured first and the origin converted into its
clock. Each worker runs the runner's own loops (closed, open, conversations) and returns its records in one
batch at the end of the cell, with its CPU share and send lag; no message crosses a process per token.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from compare.results.records import RequestRecord
from compare.run.instruments.loopwaits import busy_figures, waited_ns
from compare.run.runner import run_share
from compare.run.clients.shares import WorkerShare, exit_reason, lost_share, split_cell
from engines.base import Request

START_MARGIN_NS = 50_000_000  # the origin lies this far after "run", so every worker is waiting when it comes


@dataclass(frozen=True)
class ClientPlan:
    """The measured part of a cell, as the coordinator hands it out (a CellPlan reduced to what workers need)."""

    requests: tuple[Request, ...]
    concurrency: int
    arrivals_ns: tuple[int, ...] | None = None
    timeout_s: float = 600.0
    conversations: tuple = ()
    cell_id: str = "cell"


@dataclass
class ClientOutcome:
    records: list[RequestRecord | None]
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: host, pid, CPU share, send lag, clock
    origin_ns: int = 0  # the cell's origin on the coordinator's clock


def client_plan(plan, timeout_s: float) -> ClientPlan:
    """A cell's CellPlan (workloads/cellplan.py) reduced to its measured requests and their schedule."""
    return ClientPlan(
        plan.requests, plan.spec.concurrency, plan.arrivals_ns, timeout_s, plan.conversations, plan.spec.cell_id
    )


class ClientWorker:
    """One worker: an HTTP engine of its own (same server), and the runner's loops on its share of the cell.
    `clock_skew_ns` offsets the clock it reports (tests inject a skew that the coordinator must measure back)."""

    def __init__(self, engine_args: dict[str, Any], tokenizer=None, clock_skew_ns: int = 0):
        self.engine_args, self.tokenizer, self.clock_skew_ns = dict(engine_args), tokenizer, clock_skew_ns
        self.engine = None

    async def start(self) -> dict[str, Any]:
        from engines.http_openai import HttpCompletionsEngine

        args = dict(self.engine_args)
        request_args = args.pop("request_args", {})  # --request-arg, as the coordinator's HTTP engine passes them
        self.engine = HttpCompletionsEngine(None, args)
        self.engine.request_args = request_args
        await self.engine.start()
        return {"host": socket.gethostname(), "pid": os.getpid()}

    async def clock_ns(self) -> int:
        """Its clock as it reports it (async: Ray calls it on the actor's event loop)."""
        return perf_counter_ns() + self.clock_skew_ns

    async def run(self, share: WorkerShare, origin_ns: int) -> tuple[list[tuple[int, RequestRecord]], dict[str, Any]]:
        """`origin_ns` in this worker's clock; the records' offsets are from it, so they merge unchanged."""
        local_origin_ns = origin_ns - self.clock_skew_ns
        decode = _decoder(self.tokenizer) if self.tokenizer is not None else None
        cpu0, thread0 = time.process_time(), time.thread_time()
        await asyncio.sleep(max(0.0, (local_origin_ns - perf_counter_ns()) / 1e9))
        waited0, wall0 = waited_ns(), perf_counter_ns()
        indexed = await run_share(self.engine, share, local_origin_ns, decode)
        wall_s = (perf_counter_ns() - wall0) / 1e9
        cpu_s, thread_s, waited = time.process_time() - cpu0, time.thread_time() - thread0, waited_ns()
        lags = sorted(record.send_lag_ns for _, record in indexed if record.scheduled_ns is not None)
        stats = {
            "requests": len(indexed),
            "concurrency": share.concurrency,
            "wall_s": wall_s,
            "process_cpu_share": cpu_s / wall_s if wall_s else None,
            "loop_thread_cpu_share": thread_s / wall_s if wall_s else None,
            **busy_figures(waited - waited0 if waited is not None else None, wall_s),
            "send_lag_ms_p50": lags[len(lags) // 2] / 1e6 if lags else None,
            "send_lag_ms_max": lags[-1] / 1e6 if lags else None,
        }
        return indexed, stats

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop()


def _decoder(tokenizer):
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def _process_main(conn, engine_args: dict[str, Any], tokenizer, cpus: list[int] | None) -> None:
    """A local worker process: start, then answer ("run", share, origin) until ("stop",)."""
    if cpus:
        os.sched_setaffinity(0, cpus)

    async def serve() -> None:
        worker = ClientWorker(engine_args, tokenizer)
        try:
            conn.send(("ready", await worker.start()))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        try:
            while True:
                message = conn.recv()  # blocking: the worker has nothing else to do between cells
                if message[0] == "stop":
                    return
                try:
                    conn.send(("done", await worker.run(*message[1:])))
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            await worker.stop()

    asyncio.run(serve())


class LocalClientPool:
    """N worker processes on this host (spawned, so no engine state is forked), kept for every cell of a run."""

    placement = "processes"

    def __init__(self, engine_args: dict[str, Any], num_procs: int, tokenizer=None, cpus: list[int] | None = None):
        self.engine_args, self.num_procs, self.tokenizer, self.cpus = engine_args, num_procs, tokenizer, cpus
        self.workers: list[tuple[Any, Any]] = []  # (process, connection)
        self.info: list[dict[str, Any]] = []

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self.num_procs):
            ours, theirs = context.Pipe()
            cpus = [self.cpus[index % len(self.cpus)]] if self.cpus else None
            process = context.Process(
                target=_process_main, args=(theirs, self.engine_args, self.tokenizer, cpus), daemon=True
            )
            process.start()
            self.workers.append((process, ours))
        for _, conn in self.workers:
            kind, payload = await asyncio.to_thread(conn.recv)
            if kind != "ready":
                await self.stop()
                raise RuntimeError(f"a client process failed to start: {payload}")
            self.info.append(
                {
                    **payload,
                    "clock": "CLOCK_MONOTONIC shared with the coordinator",
                    "clock_offset_ns": 0,
                    "clock_offset_uncertainty_ns": 0,
                }
            )

    async def run(self, plan: ClientPlan) -> ClientOutcome:
        """The cell over the live workers. A worker that dies mid-cell loses only its own share: those requests are
        recorded as failed, naming it and its signal or exit code, and it takes no share of later cells."""
        if not self.workers:
            raise RuntimeError("every client worker has died; the cell cannot be sent")
        shares = split_cell(plan, len(self.workers))
        origin_ns = perf_counter_ns() + START_MARGIN_NS
        used = [index for index, share in enumerate(shares) if share is not None]
        for index in used:
            self._send(index, ("run", shares[index], origin_ns))
        answers = await asyncio.gather(*(self._answer(index) for index in used))
        results, dead = [], []
        for index, (kind, payload) in zip(used, answers):
            if kind == "done":
                results.append(payload)
                continue
            results.append(lost_answer(shares[index], self.info[index], f"{payload} mid-cell", payload))
            dead.append(index)
        outcome = merge(plan, results, [self.info[i] for i in used], origin_ns)
        self._drop(dead)
        return outcome

    def _send(self, index: int, message) -> None:
        try:
            self.workers[index][1].send(message)
        except (BrokenPipeError, OSError):
            pass  # it died between cells: its answer says so

    async def _answer(self, index: int) -> tuple[str, Any]:
        process, conn = self.workers[index]
        try:
            kind, payload = await asyncio.to_thread(conn.recv)
        except (EOFError, OSError):  # the pipe closed: the process is gone
            await asyncio.to_thread(process.join, 5)
            return "died", exit_reason(process.exitcode)
        return (kind, payload) if kind == "done" else ("died", f"failed ({payload})")

    def _drop(self, dead: list[int]) -> None:
        for index in sorted(dead, reverse=True):
            process, _ = self.workers.pop(index)
            self.info.pop(index)
            if process.is_alive():
                process.kill()

    async def stop(self) -> None:
        for process, conn in self.workers:
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for process, _ in self.workers:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
        self.workers = []


def lost_answer(share: WorkerShare, where: dict[str, Any], how: str, died: str) -> tuple[list, dict[str, Any]]:
    """A dead worker's answer, made up by the coordinator: every request of its share failed, naming the worker and
    `how` it ended, and its stats saying it `died`."""
    lost = lost_share(
        share, f"client worker on {where.get('host')} (pid {where.get('pid')}) {how}; its requests were lost with it"
    )
    return lost, {"requests": len(lost), "died": died}


def merge(plan: ClientPlan, answers: list, info: list[dict[str, Any]], origin_ns: int) -> ClientOutcome:
    """Every worker's (global index, record) pairs into the cell's one list, in the plan's order."""
    size = len(plan.conversations) * len(plan.conversations[0].user_turns) if plan.conversations else len(plan.requests)
    records: list[RequestRecord | None] = [None] * size
    workers = []
    for (indexed, stats), where in zip(answers, info):
        for index, record in indexed:
            records[index] = record
        workers.append({**where, **stats})
    return ClientOutcome(records, workers, origin_ns)


async def run_client_procs(
    engine_args: dict[str, Any], plan: ClientPlan, num_procs: int, cpus: list[int] | None = None, tokenizer=None
) -> ClientOutcome:
    """One plan on a fresh pool (benchmarks and tests); the harness keeps its pool for a whole run."""
    pool = LocalClientPool(engine_args, num_procs, tokenizer, cpus)
    await pool.start()
    try:
        return await pool.run(plan)
    finally:
        await pool.stop()
