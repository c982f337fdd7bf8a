"""HTTP mode's client workers as Ray actors (`--ray auto|ADDRESS`), for a load that outgrows one host.

Ray is an existing distributed runtime (LLMPerf runs its clients the same way); it is an optional extra.
Each actor is a compare/run/clientprocs.ClientWorker: its own event loop and connections, stamps on its own
host's monotonic clock, records kept locally and returned in one batch per cell (no remote call per token).
Hosts do not share a clock, so before the first cell the coordinator measures each actor's clock offset
NTP-style: PINGS round trips, and from the one with the smallest round-trip time (RTT) the offset is the
actor's clock minus the midpoint of the send and the answer, uncertain by at most half that RTT. The
origin is converted into each actor's clock, so the returned offsets merge as they are. The offset and its
bound are recorded per worker.
"""

from __future__ import annotations

import asyncio
import socket
from time import perf_counter_ns
from typing import Any

from compare.run.clients.clientprocs import ClientOutcome, ClientPlan, ClientWorker, lost_answer, merge
from compare.run.clients.shares import split_cell
from engines.base import UsageError

PINGS = 16
START_MARGIN_NS = 250_000_000  # a remote call takes longer to arrive than a pipe message
CONNECT_TIMEOUT_S = 3.0


def clock_offset(samples: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """(sent, remote clock, answered) samples on the coordinator's clock -> (offset, uncertainty, min RTT) in ns.
    The true offset lies within +-RTT/2 of the estimate whatever the path's asymmetry."""
    sent, remote, answered = min(samples, key=lambda s: s[2] - s[0])
    rtt = answered - sent
    return remote - (sent + answered) // 2, (rtt + 1) // 2, rtt


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray needs the ray package: pip install -e '.[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def check_reachable(address: str) -> None:
    """A clear error before Ray's own connection retries (which take minutes) for a host:port nobody answers."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray {address!r}: give auto or HOST:PORT of a running Ray head (ray start --head)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(
            f"--ray {address}: no Ray head answers there ({exc.strerror or exc}); start one with "
            "`ray start --head` or use --ray auto"
        ) from None


class RayClientPool:
    placement = "ray"

    def __init__(
        self,
        engine_args: dict[str, Any],
        num_workers: int,
        address: str,
        tokenizer=None,
        clock_skews_ns: list[int] | None = None,
    ):
        """`clock_skews_ns`: per actor, a skew added to the clock it reports (tests: measured back)."""
        self.engine_args, self.num_workers, self.address, self.tokenizer = engine_args, num_workers, address, tokenizer
        self.clock_skews_ns = clock_skews_ns or [0] * num_workers
        self.actors: list[Any] = []
        self.info: list[dict[str, Any]] = []
        self._ray = None
        self._owns_runtime = False

    async def start(self) -> None:
        ray = self._ray = import_ray()
        if self.address != "auto":
            check_reachable(self.address)
        if not ray.is_initialized():
            ray.init(
                address=self.address if self.address != "auto" else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            self._owns_runtime = True
        actor_class = ray.remote(num_cpus=1)(ClientWorker)  # each actor: one ClientWorker, its methods async
        self.actors = [
            actor_class.options(scheduling_strategy="SPREAD").remote(self.engine_args, self.tokenizer, skew)
            for skew in self.clock_skews_ns[: self.num_workers]
        ]
        where = await asyncio.gather(*(actor.start.remote() for actor in self.actors))
        for actor, placed in zip(self.actors, where):
            samples = []
            for _ in range(PINGS):
                sent = perf_counter_ns()
                remote = await actor.clock_ns.remote()
                samples.append((sent, remote, perf_counter_ns()))
            offset, uncertainty, rtt = clock_offset(samples)
            self.info.append(
                {
                    **placed,
                    "clock": f"own monotonic clock; offset from {PINGS} pings, min RTT",
                    "clock_offset_ns": offset,
                    "clock_offset_uncertainty_ns": uncertainty,
                    "ping_rtt_ns": rtt,
                }
            )

    async def run(self, plan: ClientPlan) -> ClientOutcome:
        """As the local pool's: an actor that dies (or whose node is lost) loses only its share, on record."""
        if not self.actors:
            raise RuntimeError("every client worker has died; the cell cannot be sent")
        shares = split_cell(plan, len(self.actors))
        origin_ns = perf_counter_ns() + START_MARGIN_NS
        used = [(i, share) for i, share in enumerate(shares) if share is not None]
        answers = await asyncio.gather(
            *(self.actors[i].run.remote(share, origin_ns + self.info[i]["clock_offset_ns"]) for i, share in used),
            return_exceptions=True,
        )
        results, dead = [], []
        for (index, share), answer in zip(used, answers):
            if not isinstance(answer, BaseException):
                results.append(answer)
                continue
            # an actor that died, or a node that was lost: Ray raises for its call
            first_line = str(answer).splitlines()[0][:200] if str(answer) else ""
            how = f"died mid-cell ({type(answer).__name__}: {first_line})"
            results.append(lost_answer(share, self.info[index], how, type(answer).__name__))
            dead.append(index)
        outcome = merge(plan, results, [self.info[i] for i, _ in used], origin_ns)
        for index in sorted(dead, reverse=True):
            actor = self.actors.pop(index)
            self.info.pop(index)
            try:
                self._ray.kill(actor)
            except Exception:  # gone with its node
                pass
        return outcome

    async def stop(self) -> None:
        if self._ray is None:
            return
        for actor in self.actors:
            try:
                await actor.stop.remote()
            except Exception:  # an actor that died already has nothing to close
                pass
            self._ray.kill(actor)
        self.actors = []
        if self._owns_runtime:
            self._ray.shutdown()
