"""The lease kit against the device tool's real limits: the campaign's copy keeps every package, calls fit 64 MiB
beside the real working tree, the FAKE device is as strict as the real tool, $OUT is sized before it is written,
a step leaves no process behind, engines started together are measured one at a time, and the whole lease
rehearses through the fake device with parts of the real sizes."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.gpu import calls, campaign, compile_cache, device, lease, outbox, proctree, progress, rehearse
from tools.gpu.fake_device import FakeDevice
from tools.gpu.validate import Step, run_step

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


@pytest.mark.engine
def test_the_campaign_copy_keeps_packages_named_like_skipped_folders_and_the_harness_runs_from_it(tmp_path):
    """shutil.ignore_patterns("results") matched at every depth and dropped compare/results/: every step crashed
    at import (cause 1 of #28)."""
    assert "results" in shutil.ignore_patterns("results")(str(ROOT / "compare"), ["results"])  # the old way
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=campaign.top_level_ignore(ROOT))
    assert (copy / "compare" / "results" / "store.py").is_file() and not (copy / "results").exists()
    assert not (copy / ".gpu").exists() and not (copy / ".git").exists()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare",
            "--engine",
            "null",
            "--scenario",
            "smoke",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        cwd=copy,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(copy)},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert list((tmp_path / "out").glob("null_smoke_*.json"))


@pytest.mark.engine  # subprocesses (git, bash, xz)
def test_calls_carry_at_most_64_mib_beside_the_real_tree_and_the_next_engine_fills_the_last_call():
    tree = calls.tree_bytes(ROOT)
    budget = calls.part_budget(tree)
    assert tree + budget + calls.SLACK_BYTES == calls.LIMITS.call_bytes
    sglang, vllm = int(94.5 * MiB), int(111.3 * MiB)  # the real bundles' sizes
    items = []
    for engine, size, first in (("sglang", sglang, None), ("vllm", vllm, calls.fill_bytes(sglang, budget))):
        sizes = [first] if first else []
        while sum(sizes) < size:
            sizes.append(min(budget, size - sum(sizes)))
        items += [{"engine": engine, "file": f"part-{i:03d}", "bytes": b} for i, b in enumerate(sizes)]
    planned = calls.plan_calls(items, budget)
    assert all(call.bytes + tree <= calls.LIMITS.call_bytes - calls.SLACK_BYTES for call in planned)
    assert len(planned) == -(-(sglang + vllm) // budget)  # no call half empty: the tail of one engine shares a call
    shared = [call for call in planned if {i["engine"] for i in call.items} == {"sglang", "vllm"}]
    assert len(shared) == 1 and shared[0].items[0]["engine"] == "sglang"  # SGLang's tail, then vLLM's first part
    with pytest.raises(ValueError, match="run prepare again"):
        calls.plan_calls([{"engine": "vllm", "file": "part-000", "bytes": budget + 1}], budget)
    with pytest.raises(ValueError, match="shrink the tree"):
        calls.part_budget(60 * MiB)


@pytest.mark.engine  # subprocesses (git, bash, xz)
def test_the_fake_device_refuses_and_drops_what_the_real_tool_would(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("big/\n")
    (repo / "small.txt").write_text("x")
    (repo / "big").mkdir()
    (repo / "big" / "blob").write_bytes(bytes(65 * MiB))
    fake = FakeDevice(repo, tmp_path / "device")
    assert "larger than 64 MiB" in fake.run("true", carry=("big",))["error"]  # the tree plus what is carried
    assert "timeout_s" in fake.run("true", timeout_s=601)["error"]
    out = (
        "mkdir -p $OUT/a/b/c; head -c 17000000 /dev/zero > $OUT/big.bin; echo x > $OUT/a/b/c/deep.txt; "
        "echo x > '$OUT/odd name.txt'; for i in 1 2 3 4 5 6 7 8 9; do echo $i > $OUT/f$i.txt; done"
    )
    reply = fake.run(out.replace("'$OUT/odd name.txt'", '"$OUT/odd name.txt"'))
    assert reply["rc"] == 0 and len(reply["files"]) == 8
    left = " ".join(reply["files_left_out"])
    assert (
        "big.bin (over the limits" in left and "deep.txt (a folder too deep)" in left and "odd name.txt (a name" in left
    )
    assert "f9.txt (over the limits" in left  # the ninth file
    # what the command left in its session dies with the call; a setsid'ed process lives on, until the machine goes
    # each sleep named by this test's pid: the processes are looked for machine-wide, and a run beside this one (or
    # an earlier run's failed test) may have a `sleep 300` of its own (seen once in a clean clone beside a trial)
    stay, leave = f"sleep 300.{os.getpid()}", f"sleep 301.{os.getpid()}"
    # the call returns only once the setsid'ed sleep runs (a fixed wait raced a loaded host)
    reply = fake.run(
        f"{stay} & setsid {leave} & until pgrep -f '^{leave}$' >/dev/null; do sleep 0.05; done; echo started"
    )
    assert _gone(stay), _ps(stay)  # killed ones may take a moment to exit on a loaded machine
    assert _running(leave)
    assert fake.run("sleep 5", timeout_s=1)["rc"] == 124
    machine = fake.machine
    fake.idle(31)  # past 30 s idle the machine goes back, with its processes and its /tmp
    assert not machine.exists() and _gone(leave)
    assert fake.run("true")["rc"] == 0 and fake.machine_id == 2  # a fresh machine, started again (lease seconds)
    assert fake.lease_used_s >= 2 * fake.machine_start_s


def _ps(pattern: str) -> str:
    """The processes matching, with parent, state and age: why a killed one is still there."""
    table = subprocess.run(["ps", "-eo", "pid,ppid,pgid,stat,etime,cmd"], capture_output=True, text=True).stdout
    return "\n".join(line for line in table.splitlines() if pattern in line)


def _gone(pattern: str, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while _running(pattern):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"^{pattern}$"], capture_output=True, text=True).stdout.split()
    return found


@pytest.mark.engine  # subprocesses (git, bash, xz)
def test_results_are_packed_within_out_limits_leaving_out_the_largest_profiler_traces(tmp_path):
    results = tmp_path / "results"
    (results / "step" / "profiles" / "c1").mkdir(parents=True)
    (results / "step" / "run.json").write_text(json.dumps({"cells": [{"x": i} for i in range(1000)]}))
    (results / "step" / "profiles" / "c1" / "big.trace.json.gz").write_bytes(os.urandom(3 * MiB))
    (results / "step" / "profiles" / "c1" / "small.trace.json.gz").write_bytes(os.urandom(MiB // 2))
    report = outbox.pack_results(results, tmp_path / "out", "results-campaign", budget_bytes=2 * MiB, budget_files=5)
    assert report["left_out"] == ["step/profiles/c1/big.trace.json.gz"] and report["fits"]
    assert outbox.check(tmp_path / "out") == []
    roomy = outbox.pack_results(results, tmp_path / "out2", "r", budget_bytes=64 * MiB, budget_files=8)
    assert roomy["left_out"] == [] and roomy["bytes"] > 3 * MiB


@pytest.mark.engine  # subprocesses (git, bash, xz)
def test_a_compile_cache_comes_back_in_16_mib_pieces_and_goes_in_through_the_call_folders(tmp_path):
    lease1, out = tmp_path / "lease1", tmp_path / "out"
    cache = lease1 / "compile-cache" / "flashinfer" / "cached_ops" / "batch_prefill"
    cache.mkdir(parents=True)
    (cache / "batch_prefill.so").write_bytes(os.urandom(16 * MiB))  # incompressible, like a cubin: two 15 MiB pieces
    out.mkdir()
    assert not compile_cache.pack(lease1, out, budget_bytes=10 * MiB, budget_files=8)["packed"]  # no room: not sent
    packed = compile_cache.pack(lease1, out, budget_bytes=40 * MiB, budget_files=8)
    assert packed["packed"] and packed["parts"] == 2 and outbox.check(out) == []
    # in: the pieces become carry items like an engine's, staged, and unpacked before any engine starts
    carry = tmp_path / "carry"
    shutil.copytree(out / "compile-cache", carry / "compile-cache")
    items = calls.carry_items(carry)
    assert [i["engine"] for i in items] == ["compile-cache", "compile-cache"]
    folder = tmp_path / "call"
    shutil.copytree(carry / "compile-cache", folder / "compile-cache")
    device_home, lease2 = tmp_path / "device", tmp_path / "lease2"
    device.stage_call(folder, home=device_home)
    unpacked = compile_cache.unpack_held(device_home, lease2)
    assert (
        unpacked["unpacked"]
        and (lease2 / "compile-cache" / "flashinfer" / "cached_ops" / "batch_prefill" / "batch_prefill.so").read_bytes()
        == (cache / "batch_prefill.so").read_bytes()
    )


@pytest.mark.engine  # subprocesses (git, bash, xz)
def test_a_step_leaves_no_process_behind_even_one_in_its_own_session(tmp_path):
    """An isolated point and an HTTP server start their own sessions; the step's process group missed them (#28.9)."""
    code = (
        "import subprocess,time; subprocess.Popen(['setsid','sleep','302']); "
        "print('cell c1: ok', flush=True); time.sleep(60)"
    )
    step = Step("leaky", (sys.executable, "-c", code), 1)
    record = run_step(step, 3, tmp_path / "leaky.log", dict(os.environ))
    assert record["outcome"].startswith("out of budget") and _running("sleep 302") == []
    quick = Step(
        "leaves-one", (sys.executable, "-c", "import subprocess; subprocess.Popen(['setsid','sleep','303'])"), 1
    )
    record = run_step(quick, 30, tmp_path / "quick.log", dict(os.environ))
    assert record["outcome"] == "done" and record["leftover_processes_killed"] == 1 and _running("sleep 303") == []
    assert proctree.marked("leaves-one") == []


@pytest.mark.unit
def test_the_lease_calls_fit_the_tools_arguments_and_the_last_poll_fits_its_call():
    plan = {"calls": [{"call": i, "carry": f".gpu/calls/{i:02d}"} for i in range(1, 6)]}
    sequence = lease.sequence(plan)
    assert (
        len(sequence) == 6
        and "campaign start" in sequence[0].command
        and "stage --from .gpu/calls/01" in sequence[0].command
    )
    assert all(len(c.command) <= 2000 and 1 <= c.timeout_s <= 600 and len(c.carry) <= 8 for c in sequence)
    last = lease.final_poll(6, budget_left_s=700)
    wait = int(last.command.split("--wait-s ")[1])
    assert last.timeout_s <= 600 and wait + lease.POLL_PACK_S + lease.SAFETY_S <= 700
    short = lease.final_poll(6, budget_left_s=200)
    assert int(short.command.split("--wait-s ")[1]) + lease.POLL_PACK_S + lease.SAFETY_S <= 200


@pytest.mark.unit
def test_progress_lines_are_found_with_or_without_an_isolated_childs_label():
    log = "noise\n[baseline] cell c1-in32: 4/4 ok\n== vllm / smoke on m\n[x] == sglang: started in 1.0 s\nother"
    assert progress.progress_of(log) == [
        "[baseline] cell c1-in32: 4/4 ok",
        "== vllm / smoke on m",
        "[x] == sglang: started in 1.0 s",
    ]


@pytest.mark.engine
def test_the_lease_rehearses_through_the_fake_device_with_parts_of_the_real_sizes(
    tmp_path, config_only_8b, model_cache, monkeypatch
):
    """Every call of the sequence through the FAKE device's real limits, the null engine standing in for both engines:
    accepted, run from the campaign's own copy, both engines started together and released in turn, all back."""
    monkeypatch.setenv("ENGINEBENCH_CACHE", str(model_cache))  # the 8B preset (tokenizer) built once per session
    report = rehearse.rehearse(ROOT, machine_root=tmp_path / "device", deadline_s=300)
    records = report["records"]
    assert all("error" not in r for r in records), records
    assert all(r["sent_bytes"] <= calls.LIMITS.call_bytes for r in records)
    assert all(r["files_left_out"] == [] for r in records)
    state = report["state"]
    assert state["finished"] and [s["outcome"] for s in state["steps"]] == ["done", "done"]
    first, second = state["steps"]
    assert (
        first["released_s"]
        >= max(first["started_s"] + first["ready_after_s"], second["started_s"] + second["ready_after_s"]) - 1
    )
    assert second["released_s"] >= first["released_s"] + first["measured_s"] - 1  # one at a time
    assert report["lease_used_s"] < calls.LIMITS.lease_s
