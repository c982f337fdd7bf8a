"""Engines started together, measured one at a time (compare/run/points/together.py): nobody is released before every
engine is up, the next only after the previous has exited, and each results file says what it waited and who
else held the GPU."""

import json
import os
import subprocess
import sys
import time

import pytest

from compare.analysis.checks import shared_gpu_warning
from compare.run.points import together


class FakeMember:
    """A FAKE engine process: up after `up_s`, exits `run_s` after its release."""

    def __init__(self, folder, label, up_s, run_s, log):
        self.folder, self.label, self.up_at, self.run_s, self.log = folder, label, time.monotonic() + up_s, run_s, log
        self.released_at = None

    def poll(self):
        now = time.monotonic()
        if self.released_at is None and (self.folder / f"{self.label}.go").is_file():
            self.released_at = now
            self.log.append(("released", self.label, now))
        if now >= self.up_at and not (self.folder / f"{self.label}.ready").is_file():
            (self.folder / f"{self.label}.ready").write_text("{}")
            self.log.append(("ready", self.label, now))
        if self.released_at is not None and now >= self.released_at + self.run_s:
            return 0
        return None


@pytest.mark.unit
def test_members_are_released_only_when_all_are_up_and_one_at_a_time(tmp_path):
    log = []
    members = {"fast": FakeMember(tmp_path, "fast", 0.1, 0.3, log), "slow": FakeMember(tmp_path, "slow", 0.6, 0.2, log)}

    def wait_turn(label, member):
        while member.poll() is None:
            time.sleep(0.02)

    records = together.release_in_turn(
        tmp_path, members, 10, wait_turn, gpu_processes=lambda: [{"pid": 1, "used_mib": 100.0}]
    )
    events = [(kind, label) for kind, label, _ in log]
    assert events == [("ready", "fast"), ("ready", "slow"), ("released", "fast"), ("released", "slow")]
    times = {(kind, label): t for kind, label, t in log}
    assert times[("released", "fast")] >= times[("ready", "slow")]  # the fast one waited for the slow one's start
    assert times[("released", "slow")] >= times[("released", "fast")] + 0.3  # after the first had finished
    assert [r["label"] for r in records] == ["fast", "slow"] and records[0]["others"]["engines"] == ["slow"]
    assert records[1]["others"]["engines"] == []  # the first had exited: the GPU was the second's alone
    go = json.loads((tmp_path / "fast.go").read_text())
    assert go["others"]["gpu_processes"] == [{"pid": 1, "used_mib": 100.0}]


@pytest.mark.unit
def test_the_shared_gpu_warning_names_the_others_and_their_memory():
    record = {"label": "vllm", "others": {"engines": ["sglang"], "gpu_processes": [{"pid": 7, "used_mib": 60000.0}]}}
    warning = shared_gpu_warning(record)
    assert "started together with sglang" in warning and "60000 MiB" in warning
    assert shared_gpu_warning({"others": {"engines": []}}) is None and shared_gpu_warning(None) is None


@pytest.mark.engine
def test_two_null_engines_started_together_are_measured_in_turn_and_say_so(tmp_path):
    """Known answer: the second engine's first request is sent after the first engine's process has exited."""
    barrier, procs = tmp_path / "barrier", {}
    for engine in ("null", "engines.null:NullEngine"):
        out = tmp_path / engine.replace(":", "_")
        procs[engine] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "compare",
                "--engine",
                engine,
                "--scenario",
                "smoke",
                "--out",
                str(out),
                "--no-progress",
                "--start-barrier",
                str(barrier),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ),
        )
    exits = {}

    def wait_turn(label, member):
        member.wait(timeout=300)
        exits[label] = time.time()

    records = together.release_in_turn(barrier, procs, 300, wait_turn)
    assert [r["state_at_barrier"] for r in records] == ["ready", "ready"] and all(
        p.returncode == 0 for p in procs.values()
    )
    first = json.loads(next((tmp_path / "null").glob("null_smoke_*.json")).read_text())
    second = json.loads(next((tmp_path / "engines.null_NullEngine").glob("*_smoke_*.json")).read_text())
    assert first["start_together"]["others"]["engines"] == ["engines.null:NullEngine"]
    assert second["start_together"]["others"]["engines"] == []
    assert second["start_together"]["released_unix_s"] >= exits["null"] - 0.5
    assert second["start_together"]["waited_s"] >= first["cells"][0]["summary"]["wall_s"]
    assert any(
        w.startswith("shared GPU: started together with engines.null:NullEngine") for w in first["cells"][0]["warnings"]
    )
    assert not any(w.startswith("shared GPU") for w in second["cells"][0]["warnings"])


@pytest.mark.engine
def test_start_together_from_the_cli_runs_each_engine_in_its_child_and_releases_them_in_order(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare",
            "--engine",
            "null",
            "--engine",
            "engines.null:NullEngine",
            "--scenario",
            "smoke",
            "--start-together",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    released = [line for line in run.stdout.splitlines() if line.startswith("-- released: ")]
    assert released == ["-- released: null", "-- released: engines.null:NullEngine"]
    first = json.loads(next(tmp_path.glob("null_smoke_*.json")).read_text())
    assert first["start_together"]["others"]["engines"] == ["engines.null:NullEngine"]


@pytest.mark.unit
def test_start_together_refuses_one_engine_and_sweeps_with_exit_2(capsys):
    from compare.cli.main import main

    assert main(["--engine", "null", "--start-together", "--scenario", "smoke"]) == 2
    assert "needs two engines or more" in capsys.readouterr().err
    assert (
        main(["--engine", "null", "--engine", "engines.null:NullEngine", "--start-together", "--sweep", "x=1,2"]) == 2
    )
    assert "does not take --sweep" in capsys.readouterr().err
