"""The test suite's CPU slots (tests/conftest.py): an exclusive test runs alone, and a `whole_cpu` test that takes the
whole CPU midway cannot deadlock against an exclusive test that waits too. Played by two threads on a run of its own
(a run id and two slots that no real test holds)."""

import fcntl
import os
import tempfile
import threading
import time
import uuid

import pytest

from tests.conftest import CpuSlots


def _held_elsewhere(index: int) -> bool:
    """Whether another holder has slot `index` of this run locked (a probe: it takes and drops it if free)."""
    path = os.path.join(
        tempfile.gettempdir(), f"enginebench-pytest-{os.environ['PYTEST_XDIST_TESTRUNUID']}.slot{index}"
    )
    with open(path, "a") as slot:
        try:
            fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False  # closing the file drops the probe's lock


@pytest.fixture
def run_of_two(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", f"slots-test-{uuid.uuid4().hex}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")


@pytest.mark.unit
def test_an_exclusive_test_waits_for_the_test_beside_it_and_then_runs_alone(run_of_two):
    beside, events = CpuSlots(), []
    beside.take(1)

    def exclusive():
        slots = CpuSlots()
        slots.take(2)
        events.append("exclusive ran")
        slots.release()

    thread = threading.Thread(target=exclusive, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert events == []  # one slot is still held beside it
    beside.release()
    thread.join(timeout=5)
    assert events == ["exclusive ran"]


@pytest.mark.unit
def test_a_test_taking_the_whole_cpu_midway_does_not_deadlock_against_a_waiting_exclusive_test(run_of_two):
    gated, events = CpuSlots(), []
    gated.take(1)  # the anchor's server starts beside the other worker

    def exclusive():
        slots = CpuSlots()
        slots.take(2)  # holds the turnstile and the other slot, waits for the gated test's slot
        events.append("exclusive")
        time.sleep(0.2)
        slots.release()

    thread = threading.Thread(target=exclusive, daemon=True)
    thread.start()
    (free,) = {0, 1} - set(gated.held)
    while not _held_elsewhere(free):  # the exclusive test holds the turnstile and the free slot: it waits for ours
        time.sleep(0.01)
    done = threading.Event()

    def upgrade():  # whole_cpu()
        gated.take_all()
        events.append("gated measures alone")
        done.set()

    threading.Thread(target=upgrade, daemon=True).start()
    assert done.wait(timeout=10), events  # with a slot kept while waiting, both would wait forever
    thread.join(timeout=5)
    assert events == ["exclusive", "gated measures alone"] and len(gated.held) == 2
    gated.release()
