"""A FAKE engine for the host-profile known-answer test: the null engine's tokens, plus a child process whose
time is known. The child (`python -m tests.anatomy_fake`) repeats cycles of random length, each spending
60% of its wall time in `schedule_fake`, 30% in `forward_fake` (both spinning on the clock) and 10% waiting
on an Event. Random cycle lengths keep a fixed-rate sampler from locking onto one phase."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

from engines.null import NullEngine

SHARES = {"scheduling": 0.60, "model_forward": 0.30, "waiting": 0.10}


def schedule_fake(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def forward_fake(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def busy_loop() -> None:
    idle, rng = threading.Event(), random.Random(0)
    while True:
        cycle_s = rng.uniform(0.005, 0.030)
        started = time.perf_counter()
        schedule_fake(cycle_s * SHARES["scheduling"])
        forward_fake(cycle_s * SHARES["model_forward"])
        idle.wait(max(0.0, started + cycle_s - time.perf_counter()))  # the rest of the cycle: 10%


class FakeBusyEngine(NullEngine):
    """FAKE: null-engine tokens in the harness, and a busy child with known phase shares."""

    host_anatomy = {
        "roles": [["fake_core", "* -m tests.anatomy_fake*"]],
        "phases": [["scheduling", "*:schedule_fake"], ["model_forward", "*:forward_fake"]],
    }

    async def start(self) -> None:
        await super().start()
        self.child = subprocess.Popen([sys.executable, "-m", "tests.anatomy_fake"])

    async def stop(self) -> None:
        self.child.kill()
        self.child.wait()
        await super().stop()


if __name__ == "__main__":
    busy_loop()
