"""The cross-check with `vllm bench serve`: vLLM's definitions recomputed from our raw samples, and real agreement."""

import contextlib
import json
import os
import select
import subprocess
import sys
import time

import pytest

from compare.anchors.bench_process import BenchProcess
from compare.anchors.vllm_bench import TOLERANCE, agreement, harness_figures, harness_scenario
from tests.fakes import record
from tests.bounds import below

NUM_PROMPTS, OUTPUT_LEN = 16, 64  # the engine test's workload: two waves at the tool's concurrency of 8


def _doc(requests):
    summary = {
        "output_tok_per_s": 100.0,
        "request_per_s": 1.0,
        "num_ok": len(requests),
        "output_tokens_total": 4,
        "prompt_tokens_total": 8,
        "tpot_ms": {"p50": 0.0},
        "itl_ms": {"p50": 0.0},
        "tokens_per_chunk_mean": 2.0,
    }
    return {"cells": [{"summary": summary, "requests": requests}]}


@pytest.mark.unit
def test_vllm_definitions_are_recomputed_from_raw_samples():
    # 4 tokens in 2 chunks: first chunk (2 tokens) at 10 ms, second (2 tokens) at 40 ms, stream ends at 46 ms
    figures = harness_figures(_doc([record([10, 10, 40, 40], chunk_tokens=[2, 2], end_ms=46)]))
    assert figures["ttft_ms_median"] == 10.0
    assert figures["tpot_ms_median"] == pytest.approx(12.0)  # (46 - 10) / (4 - 1): end of stream, as vLLM
    assert figures["itl_ms_median"] == 30.0  # one sample per chunk, as vLLM (ours per token would be 15, 15)


@pytest.mark.unit
def test_the_harness_scenario_is_built_as_data_not_from_cli_strings():
    import argparse

    args = argparse.Namespace(concurrency=8, input_len=256, output_len=128, num_prompts=32, warmups=2)
    scenario = harness_scenario(args)
    assert (scenario.name, scenario.concurrency, scenario.input_tokens, scenario.output_tokens) == (
        "concurrent",
        (8,),
        (256,),
        128,
    )
    assert (scenario.num_requests, scenario.repetitions, scenario.warmup_requests, scenario.prompt_mode) == (
        32,
        None,
        2,
        "distinct",
    )


@pytest.mark.unit
def test_agreement_is_judged_against_the_stated_tolerance():
    theirs = [{"ttft_ms_median": 100.0, "tpot_ms_median": 10.0, "output_tok_per_s": 500.0}]
    ours = [
        {
            "ttft_ms_median": 100.0 * (1 + TOLERANCE["ttft_ms_median"]) + 1,
            "tpot_ms_median": 10.0,
            "output_tok_per_s": 500.0 * (1 - TOLERANCE["output_tok_per_s"]) + 1,
        }
    ]
    rows = agreement(theirs, ours)
    assert not rows["ttft_ms_median"]["agrees"] and rows["tpot_ms_median"]["agrees"]
    assert rows["output_tok_per_s"]["agrees"] and rows["tpot_ms_median"]["relative_diff"] == 0.0


@pytest.mark.unit
def test_a_difference_beyond_tolerance_is_not_significant_when_the_runs_overlap():
    theirs = [
        {"ttft_ms_median": 77.0, "tpot_ms_median": 10.0, "output_tok_per_s": 500.0},
        {"ttft_ms_median": 116.0, "tpot_ms_median": 10.0, "output_tok_per_s": 500.0},
    ]
    ours = [
        {"ttft_ms_median": 55.0, "tpot_ms_median": 10.0, "output_tok_per_s": 500.0},
        {"ttft_ms_median": 89.0, "tpot_ms_median": 10.0, "output_tok_per_s": 500.0},
    ]
    row = agreement(theirs, ours)["ttft_ms_median"]
    assert not row["within_tolerance"] and row["runs_overlap"] and row["agrees"]  # -26%, but 77-116 vs 55-89 overlap
    apart = [{**run, "ttft_ms_median": run["ttft_ms_median"] / 2} for run in ours]
    assert not agreement(theirs, apart)["ttft_ms_median"]["agrees"]


@pytest.mark.unit
def test_one_disturbed_run_does_not_decide_the_verdict_but_a_steady_difference_does():
    # TPOT p50 per run from CI on 2026-11-23: vllm bench 10.53, 9.77; ours 10.96 and one disturbed run, 15.19
    # (its tok/s fell 29% too). Two more runs per tool, as the default of 4 gives, at the tools' usual values.
    theirs = [
        {"ttft_ms_median": 92.0, "tpot_ms_median": tpot, "output_tok_per_s": 740.0}
        for tpot in (10.53, 9.77, 10.2, 10.1)
    ]
    ours = [
        {"ttft_ms_median": 100.0, "tpot_ms_median": tpot, "output_tok_per_s": 700.0}
        for tpot in (10.96, 15.19, 10.9, 11.1)
    ]
    row = agreement(theirs, ours)["tpot_ms_median"]
    assert row["agrees"] and row["within_tolerance"] and row["enginebench"] == pytest.approx(11.03)
    slower = [{**run, "tpot_ms_median": run["tpot_ms_median"] * 1.3} for run in ours]  # every run 30% slower
    assert not agreement(theirs, slower)["tpot_ms_median"]["agrees"]


class FakeBenchProcess(BenchProcess):
    """A FAKE vllm bench: a program that says ready after a known import time, then writes its arguments to its log
    and exits with the code they name."""

    code = (
        "import json, os, sys, time\n"
        "time.sleep(float(os.environ.get('FAKE_IMPORT_S', '0')))\n"
        "if os.environ.get('FAKE_DIES'): sys.exit(3)\n"
        "os.write(int(sys.argv[1]), b'ready\\n')\n"
        "line = sys.stdin.readline()\n"
        "if not line: sys.exit(0)\n"
        "argv = json.loads(line)\n"
        "print('ran', argv, flush=True)\n"
        "sys.exit(int(argv[0]))\n"
    )


@pytest.mark.engine
def test_a_bench_process_imports_ahead_runs_once_on_its_arguments_and_fails_naming_its_log(tmp_path):
    env = dict(os.environ, FAKE_IMPORT_S="1.0")
    started = time.monotonic()
    ahead = FakeBenchProcess(env, tmp_path / "ahead.log")
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 0.004919 (headroom 1.01)
    below(time.monotonic() - started, 0.9, 0.01, "starting a bench process (s)")  # waiting for the import: 1 s
    ahead.wait_ready()
    assert time.monotonic() - started >= 1.0
    ahead.run(["0", "--flag"])
    assert "ran ['0', '--flag']" in (tmp_path / "ahead.log").read_text()
    with pytest.raises(RuntimeError, match="vllm bench serve exited with 2; see .*failing.log"):
        FakeBenchProcess(os.environ, tmp_path / "failing.log").run(["2"])
    with pytest.raises(RuntimeError, match="exited with 3 before its run; see .*dead.log"):
        FakeBenchProcess(dict(os.environ, FAKE_DIES="1"), tmp_path / "dead.log").wait_ready()
    unused = FakeBenchProcess(env, tmp_path / "unused.log")
    unused.close()  # the anchor failed before this run: the process ends without running
    assert unused.proc.returncode == 0 and "ran" not in (tmp_path / "unused.log").read_text()


def _read_until_ready(fd: int) -> tuple[str, bool]:
    """The anchor's output up to "anchor: ready" (all of it and False if it ended first); nothing after it is read."""
    seen = b""
    while not seen.endswith(b"anchor: ready\n"):
        byte = os.read(fd, 1)
        if not byte:
            return seen.decode(), False
        seen += byte
    return seen.decode(), True


@pytest.mark.engine  # its measured runs take the whole CPU (whole_cpu): two clients' agreement: beside another engine
# test on 2 cores, CI read -33% tok/s (12 of it was then our own /metrics scrape); alone, one tool's runs stay within
# 3% of each other. The server's start (~50 s) runs beside the other worker's tests.
def test_enginebench_agrees_with_vllm_bench_serve_on_one_server(model_cache, tmp_path, whole_cpu):
    pytest.importorskip("vllm")
    pytest.importorskip("pandas")
    from tests.conftest import ROOT, VLLM_DEFAULT_LAYOUT

    # vLLM's default layout (a worker process apart from EngineCore), as a user's anchor runs: with the worker inside
    # EngineCore (the tests' VLLM_ENABLE_V1_MULTIPROCESSING=0) our TTFT p50 read +14% and +23% of vllm bench's
    env = dict(os.environ, ENGINEBENCH_CACHE=str(model_cache), PYTHONPATH=str(ROOT), **VLLM_DEFAULT_LAYOUT)
    # eager: the agreement is about the two clients, and compiling the server's graph cost 80 s of the test.
    # Alone, half the tool's default workload (16 prompts of 256 + 64 tokens, two runs per tool) agrees as well as
    # the whole one did (TTFT +0.1%, TPOT +5.2%, tok/s -3.6% on the AVX2 host) in 3 minutes instead of 7.5
    argv = [
        sys.executable,
        "-m",
        "compare.anchor_vllm",
        "--engine-arg",
        "enforce_eager=true",
        "--repetitions",
        "2",
        "--num-prompts",
        str(NUM_PROMPTS),
        "--output-len",
        str(OUTPUT_LEN),
        "--out",
        str(tmp_path),
        "--wait-for-go",
    ]
    with (
        (tmp_path / "stderr.txt").open("w") as errors,
        subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        ) as anchor,
    ):
        before, ready = _read_until_ready(anchor.stdout.fileno())
        if ready:
            waits = not select.select([anchor.stdout], [], [], 0.5)[0]  # no measured run before the go
            whole_cpu()
            with contextlib.suppress(BrokenPipeError):  # it died meanwhile: its stderr says why, below
                anchor.stdin.write(b"go\n")
                anchor.stdin.flush()
        stdout = anchor.communicate(timeout=900)[0].decode()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert ready and waits, (before[-1500:], stderr[-2000:])
    (path,) = tmp_path.glob("anchor_vllm_*/anchor.json")
    doc = json.loads(path.read_text())
    for theirs, ours in zip(doc["vllm_bench_runs"], doc["enginebench_runs"]):
        assert theirs["completed"] == ours["completed"] == NUM_PROMPTS
        assert theirs["input_tokens_total"] == ours["input_tokens_total"] == NUM_PROMPTS * 256  # the same prompts, ids
        assert theirs["output_tokens_total"] == ours["output_tokens_total"] == NUM_PROMPTS * OUTPUT_LEN
    for key, row in doc["agreement"].items():
        assert row["agrees"], (key, row, stdout[-1500:])
    assert anchor.returncode == 0, stderr[-2000:]
