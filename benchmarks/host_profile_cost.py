"""What `--host-profile` costs the process it samples: py-spy (`--idle --nonblocking`, as the harness runs it)
on a child that repeats a fixed pure-Python "step" of about 10 ms, a stand-in for one decode step of an
engine's host loop. Step time with and without the sampler, at several rates, and the sampler's own CPU:

    .venv/bin/python benchmarks/host_profile_cost.py            # both processes free to use every core
    taskset -c 0 .venv/bin/python benchmarks/host_profile_cost.py   # sampler and target share one core

The figure that matters is the step-time change (a TPOT proxy); the harness warns past 5% of a core.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compare.run.instruments.hostprofile import py_spy_argv, py_spy_binary
from compare.run.instruments.servingprocs import cpu_seconds

CHILD = r"""
import sys, time
def step(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
n = 1
while True:  # calibrate one step to ~10 ms
    t = time.perf_counter(); step(n); d = time.perf_counter() - t
    if d > 0.01: break
    n *= 2
n = int(n * 0.01 / d)
out = open(sys.argv[1], "w")
while True:
    t = time.perf_counter_ns(); step(n); out.write(f"{time.perf_counter_ns() - t}\n"); out.flush()
"""


def step_times(path: Path, since: int) -> np.ndarray:
    lines = path.read_text().split()
    return np.array([int(x) for x in lines[since:]], dtype=float) / 1e6


def measure(rate_hz: int, seconds: float, rounds: int = 3) -> dict[str, float]:
    """One child; sampler off and on in alternating windows (off, on, off, on, ...), so drift hits both alike."""
    off, on, spy_cpu = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "steps.txt"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(log)])
        time.sleep(2.0)  # calibration and warm-up
        window = seconds / (2 * rounds)
        for index in range(rounds):
            since = len(log.read_text().split())
            time.sleep(window)
            off.append(step_times(log, since))
            spy = subprocess.Popen(
                py_spy_argv(py_spy_binary(), child.pid, rate_hz, Path(folder) / f"p{index}.json"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # attached
            since, cpu0 = len(log.read_text().split()), cpu_seconds(spy.pid)
            time.sleep(window)
            on.append(step_times(log, since))
            spy_cpu.append((cpu_seconds(spy.pid) - cpu0) / window)
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        child.kill()
        child.wait()
    off_ms, on_ms = np.concatenate(off), np.concatenate(on)
    return {
        "off_ms_p50": float(np.median(off_ms)),
        "on_ms_p50": float(np.median(on_ms)),
        "off_ms_mean": float(off_ms.mean()),
        "on_ms_mean": float(on_ms.mean()),
        "sampler_cpu_share": float(np.mean(spy_cpu)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rates", default="50,100,200,500")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(
        f"{cores} core(s); a ~10 ms pure-Python step; sampler off and on in alternating windows ({args.seconds:g} s "
        f"per rate)"
    )
    print(
        "| rate Hz | step p50 off -> on ms | change | step mean off -> on ms | change | py-spy CPU (share of a core) |"
    )
    print("|---|---|---|---|---|---|")
    for rate in [int(r) for r in args.rates.split(",")]:
        m = measure(rate, args.seconds)
        print(
            f"| {rate} | {m['off_ms_p50']:.3f} -> {m['on_ms_p50']:.3f} | {m['on_ms_p50'] / m['off_ms_p50'] - 1:+.1%} | "
            f"{m['off_ms_mean']:.3f} -> {m['on_ms_mean']:.3f} | {m['on_ms_mean'] / m['off_ms_mean'] - 1:+.1%} | "
            f"{m['sampler_cpu_share']:.1%} |"
        )


if __name__ == "__main__":
    main()
