"""When a cell stops before its plan runs out: `--until-ci` (its figure is known well enough), a cap in seconds, or
`--end-saturated` (an open-loop cell over capacity: compare/analysis/saturation.py).

The runner tells a CellStop of every send and every end; the workers and the dispatcher ask `ended` before each
send. The plan holds the cap in requests (workloads/scenarios.py: EarlyStop). On `--until-ci` the requests in flight
at the stop run to their end and count; on saturation they are cancelled (their partial records kept apart, under
the cell's `stop.saturation.cancelled`), since waiting out an ever longer queue is the time this saves.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Callable

from compare.analysis.precision import parse_rule
from compare.analysis.saturation import CHECK_EVERY_S, RULE as SATURATION_RULE, saturation
from compare.results.records import RequestRecord
from workloads.scenarios import EarlyStop

CANCELLED = "cancelled: the cell saturated"  # the error of a request in flight when a saturated cell ended
RECHECK_SHARE = 0.02  # the interval is recomputed once the completed requests grow by this share (at least 1)


class CellStop:
    def __init__(self, early: EarlyStop, origin_ns: int, last_arrival_ns: int | None = None):
        self.early, self.origin_ns, self.last_arrival_ns = early, origin_ns, last_arrival_ns
        self.rule = parse_rule(early.until_ci) if early.until_ci else None
        self.done_records: list[RequestRecord] = []
        self.sends: list[tuple[float, int]] = []  # saturation watch: (s since origin, in flight with this one)
        self.ends: list[tuple[float, float]] = []  # (due time in s, E2E ms) of completed requests
        self.in_flight = 0
        self.num_sent = 0
        self.ended_by: str | None = None  # "interval", "max_s" or "saturated"
        self.ended_ns: int | None = None
        self.figure_at_stop: dict[str, Any] | None = None
        self.evidence: dict[str, Any] | None = None
        self.on_saturated: Callable[[], None] | None = None  # open loop: cancel what is in flight
        self.cancelled: list[RequestRecord] = []
        self._next_watch_ns = 0
        self._checked_at = 0

    @property
    def ended(self) -> bool:
        return self.ended_by is not None

    @property
    def saturated(self) -> bool:
        return self.ended_by == "saturated"

    def cancelled_as(self) -> str | None:
        """Why a request cancelled now was cancelled, or None (an interrupt: not ours to swallow)."""
        return CANCELLED if self.saturated else None

    def is_cancelled(self, record: RequestRecord) -> bool:
        return record.error == CANCELLED

    def sent(self) -> None:
        self.in_flight += 1
        self.num_sent += 1
        now = perf_counter_ns()
        if self.early.end_saturated:
            self.sends.append(((now - self.origin_ns) / 1e9, self.in_flight))
        self._check(now)

    def done(self, record: RequestRecord) -> None:
        self.in_flight -= 1
        if self.is_cancelled(record):
            self.cancelled.append(record)
            return
        self.done_records.append(record)
        if self.early.end_saturated and record.ok and record.e2e_ms is not None:
            self.ends.append((record.start_ns / 1e9, record.e2e_ms))
        self._check(perf_counter_ns())

    def _check(self, now_ns: int) -> None:
        if self.ended:
            return
        if self.early.max_s and now_ns - self.origin_ns >= self.early.max_s * 1e9:
            self._end("max_s", now_ns)
        elif self.rule is not None and len(self.done_records) >= self._checked_at * (1 + RECHECK_SHARE) + 1:
            self._checked_at = len(self.done_records)
            figure = self.rule.figure(self.rule.values(self.done_records))
            if figure is not None and figure["met"]:
                self.figure_at_stop = figure
                self._end("interval", now_ns)
        if not self.ended and self.early.end_saturated and now_ns >= self._next_watch_ns:
            self._next_watch_ns = now_ns + int(CHECK_EVERY_S * 1e9)
            self.evidence = saturation(self.sends, self.ends)
            if self.evidence is not None:
                self._end("saturated", now_ns)
                if self.on_saturated is not None:
                    self.on_saturated()

    def _end(self, why: str, now_ns: int) -> None:
        self.ended_by, self.ended_ns = why, now_ns

    def outcome(self, num_planned: int) -> dict[str, Any]:
        """What the cell records under `stop`: the rule, what ended it, the figure at the stop and at the end."""
        early = self.early
        ended_by = self.ended_by or ("max_requests" if self.rule is not None else None)
        outcome: dict[str, Any] = {
            "until_ci": self.rule.label if self.rule else None,
            "max_requests": num_planned,
            "max_s": early.max_s or None,
            "end_saturated": early.end_saturated,
            "ended_by": ended_by,
            "cap_ended": ended_by in ("max_requests", "max_s") if self.rule else False,
            "num_sent": self.num_sent,
            "ended_after_s": (self.ended_ns - self.origin_ns) / 1e9 if self.ended_ns else None,
        }
        if self.rule is not None:
            outcome["figure_at_stop"] = self.figure_at_stop
            outcome["figure_at_end"] = self.rule.figure(self.rule.values(self.done_records))
        if early.end_saturated:
            left_s = None
            if self.saturated and self.last_arrival_ns is not None:
                left_s = max(0.0, (self.origin_ns + self.last_arrival_ns - self.ended_ns) / 1e9)
            outcome["saturation"] = {
                "rule": SATURATION_RULE,
                "saturated": self.saturated,
                "evidence": self.evidence if self.saturated else None,
                "schedule_left_s": left_s,  # the sends not waited for: a floor on the time saved (the drain adds)
                "num_in_flight_cancelled": len(self.cancelled),
                "cancelled": self.cancelled,
            }
        return outcome
