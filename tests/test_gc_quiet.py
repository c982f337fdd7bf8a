"""No collector pauses in the measured window, the ones left observed (compare/run/instruments/gcquiet.py), and precise
open-loop sends (compare/run/openloop.py sleep_until). FakeClock is a FAKE clock and sleep: every read advances it
by a known step and every timer sleep wakes a known time late, so the waits have known answers. The null engine
is a FAKE whose `gc_collect_every` forces collections inside the window. Figures stay in
benchmarks/open_loop_send_error.py, not here."""

import asyncio
import gc
import json

import pytest

from compare.analysis.checks import gc_warnings
from compare.run.instruments.gcquiet import GcQuiet
from compare.run.openloop import precise_sends, sleep_until
from tests.test_cli import cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit
STEP_NS = 50_000  # each clock read
LATE_NS = 600_000  # each timer sleep's lateness (the loop's millisecond timer)


class FakeClock:
    def __init__(self, late_ns: int = LATE_NS):
        self.now, self.late_ns, self.sleeps = 0, late_ns, []

    def __call__(self) -> int:
        self.now += STEP_NS
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.now += max(0, int(seconds * 1e9) + self.late_ns)  # a timer never fires before it was set


def waited(due_ns: int, precise: bool, late_ns: int = LATE_NS) -> FakeClock:
    clock = FakeClock(late_ns)
    asyncio.run(sleep_until(due_ns, precise, clock=clock, sleep=clock.sleep))
    return clock


def test_the_precise_wait_sends_at_the_due_time_within_one_clock_step_never_before():
    clock = waited(10_000_000, precise=True)
    assert 10_000_000 <= clock.now < 10_000_000 + STEP_NS
    assert clock.sleeps[0] > 0 and set(clock.sleeps[1:]) == {0}  # one timer sleep, then yields


def test_the_timer_alone_is_late_by_the_timers_lateness_and_an_early_wake_never_sends_early():
    assert waited(10_000_000, precise=False).now >= 10_000_000 + LATE_NS
    early = waited(10_000_000, precise=False, late_ns=-300_000)  # a timer that fires 0.3 ms early
    assert early.now >= 10_000_000 and len(early.sleeps) >= 2


def test_only_fast_open_loop_cells_spin():
    assert precise_sends(tuple(range(0, 1_000_000_000, 1_000_000)))  # 1000 req/s
    assert not precise_sends(tuple(range(0, 10_000_000_000, 100_000_000)))  # 10 req/s
    assert not precise_sends((0, 0, 0)) and not precise_sends(None)  # all at once (rate inf); closed loop


def test_inside_the_window_the_collector_is_off_and_the_heap_frozen_and_both_come_back():
    async def go():
        async with GcQuiet() as quiet:
            inside = gc.isenabled(), gc.get_freeze_count()
            gc.collect()  # a library's explicit collection still runs, and is recorded
            gc.collect(1)
        return quiet.result(), inside

    result, (enabled_inside, frozen_inside) = asyncio.run(go())
    assert not enabled_inside and frozen_inside > 0 and result["frozen_objects"] > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert result["collections"] == 2 and result["by_generation"] == {"2": 1, "1": 1} and result["total_ms"] > 0


def test_a_cell_that_collects_inside_its_window_records_each_collection(cli, tmp_path):  # noqa: F811
    """Known answer: 4 requests x 4 tokens, the fake collects every 4th chunk: 4 collections in the window."""
    code, out, err = cli(
        "--engine",
        "null",
        "--scenario",
        "smoke",
        "--concurrency",
        "1",
        "--num-requests",
        "4",
        "--warmups",
        "0",
        "--output-tokens",
        "4",
        "--engine-arg",
        "interval_ms=1",
        "--engine-arg",
        "gc_collect_every=4",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    cell = json.loads(next(tmp_path.glob("*.json")).read_text())["cells"][0]
    assert cell["harness_gc"]["policy"] == "disabled" and cell["harness_gc"]["collections"] == 4
    # each pause where it began on the records' clock (for the trace): inside the cell, in order, as long as counted
    pauses, last_end_ns = cell["harness_gc"]["pauses"], max(r["sent_ns"] + r["end_ns"] for r in cell["requests"])
    assert len(pauses) == 4 and all(0 <= p["at_ns"] <= last_end_ns for p in pauses)
    assert [p["at_ns"] for p in pauses] == sorted(p["at_ns"] for p in pauses)
    assert sum(p["ms"] for p in pauses) == pytest.approx(cell["harness_gc"]["total_ms"])
    assert cell["config"]["send_wait"] is None  # closed loop


def test_a_pause_over_1_ms_is_a_warning_and_a_shorter_one_is_not():
    assert gc_warnings({"collections": 3, "max_ms": 0.4, "policy": "disabled"}) == []
    (warning,) = gc_warnings({"collections": 3, "max_ms": 7.5, "policy": "enabled"})
    assert "the longest 7.5 ms" in warning
