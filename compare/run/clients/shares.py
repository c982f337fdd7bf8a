"""How the coordinator splits one cell's measured requests over client workers.

- Closed loop: the cell's `concurrency` workers are dealt out as evenly as they go (c=5 over 2: 3 and 2), and
  request i goes to the process of worker slot i mod c, so each process gets requests in proportion to its
  workers. Each process's workers then share its queue, as one process's do; across processes there is no
  shared queue (a tail where one process has finished and another has not is possible, and visible in the
  per-worker stats).
- Open loop: request i goes to process i mod N, at its scheduled time; a concurrency cap is split as above.
- Conversations: conversation j goes to process j mod N, the concurrency split as above.
A process that would get no worker is left idle (c=1 uses one process whatever N is).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from compare.results.records import RequestRecord
from engines.base import Request


@dataclass(frozen=True)
class WorkerShare:
    kind: str  # "closed", "open" or "conversations"
    concurrency: int  # this worker's closed-loop workers, open-loop cap (0: none) or conversations at once
    indices: tuple[int, ...]  # the cell's request indices it sends (conversations: their indices)
    requests: tuple[Request, ...]  # those requests (conversations: the cell's template request)
    arrivals_ns: tuple[int, ...] | None = None
    conversations: tuple = ()
    turns: int = 0  # conversations: turns per conversation (records go to conversation * turns + turn)
    cell_id: str = "cell"
    timeout_s: float = 600.0


def deal(total: int, parts: int) -> list[int]:
    """`total` items over `parts` as evenly as they go, the first parts taking the remainder."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def split_cell(plan, num_workers: int) -> list[WorkerShare | None]:
    """One share per worker (None: idle). `plan`: compare/run/clientprocs.ClientPlan."""
    if plan.conversations:
        return _split_conversations(plan, num_workers)
    if plan.arrivals_ns is not None:
        return _split_open(plan, num_workers)
    return _split_closed(plan, num_workers)


def _split_closed(plan, num_workers: int) -> list[WorkerShare | None]:
    concurrency = min(plan.concurrency, len(plan.requests))
    per_worker = deal(concurrency, num_workers)
    slots = [
        worker
        for rank in range(max(per_worker, default=0))
        for worker in range(num_workers)
        if per_worker[worker] > rank
    ]
    owned: list[list[int]] = [[] for _ in range(num_workers)]
    for index in range(len(plan.requests)):
        owned[slots[index % len(slots)]].append(index)
    return [
        WorkerShare(
            "closed",
            per_worker[w],
            tuple(owned[w]),
            tuple(plan.requests[i] for i in owned[w]),
            cell_id=plan.cell_id,
            timeout_s=plan.timeout_s,
        )
        if per_worker[w]
        else None
        for w in range(num_workers)
    ]


def _split_open(plan, num_workers: int) -> list[WorkerShare | None]:
    """Request i to active worker i mod A; with a concurrency cap below N, only the capped workers are active."""
    caps = deal(plan.concurrency, num_workers) if plan.concurrency > 0 else [0] * num_workers
    active = [w for w in range(num_workers) if plan.concurrency <= 0 or caps[w] > 0]
    result: list[WorkerShare | None] = [None] * num_workers
    for rank, worker in enumerate(active):
        indices = tuple(range(rank, len(plan.requests), len(active)))
        if indices:
            result[worker] = WorkerShare(
                "open",
                caps[worker],
                indices,
                tuple(plan.requests[i] for i in indices),
                tuple(plan.arrivals_ns[i] for i in indices),
                cell_id=plan.cell_id,
                timeout_s=plan.timeout_s,
            )
    return result


def _split_conversations(plan, num_workers: int) -> list[WorkerShare | None]:
    per_worker = deal(min(plan.concurrency, len(plan.conversations)), num_workers)
    active = [w for w in range(num_workers) if per_worker[w] > 0]
    turns = len(plan.conversations[0].user_turns)
    result: list[WorkerShare | None] = [None] * num_workers
    for rank, worker in enumerate(active):
        mine = tuple(plan.conversations[rank :: len(active)])
        result[worker] = WorkerShare(
            "conversations",
            per_worker[worker],
            tuple(c.index for c in mine),
            (plan.requests[0],),
            conversations=mine,
            turns=turns,
            cell_id=plan.cell_id,
            timeout_s=plan.timeout_s,
        )
    return result


def lost_share(share: WorkerShare, why: str) -> list[tuple[int, RequestRecord]]:
    """A share whose worker died: every request it held, recorded as failed with `why` (its records died with it)."""
    if share.kind == "conversations":
        return [
            (
                c.index * share.turns + turn,
                RequestRecord(
                    id=f"{share.cell_id}-c{c.index}-t{turn}",
                    prompt_tokens=0,
                    target_output_tokens=c.output_tokens[turn],
                    error=why,
                    tags={"conversation": c.index, "turn": turn},
                ),
            )
            for c in share.conversations
            for turn in range(share.turns)
        ]
    arrivals = share.arrivals_ns or (None,) * len(share.requests)
    return [
        (
            index,
            RequestRecord(
                id=request.request_id,
                prompt_tokens=request.num_prompt_tokens,
                target_output_tokens=request.max_output_tokens,
                error=why,
                scheduled_ns=due,
                tags=dict(request.tags) if request.tags else None,
            ),
        )
        for index, request, due in zip(share.indices, share.requests, arrivals)
    ]


def exit_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words: the signal that killed it, or its exit code."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"
