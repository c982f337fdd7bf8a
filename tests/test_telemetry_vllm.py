"""Engine telemetry on vLLM's CPU build for real, from one run: the stat-logger timeline, the profiler window, the
host profile, and every request arg read back (the unit tests: test_telemetry.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


# every key vLLM takes but prompt_logprobs, which costs a log-softmax and a detokenization per prompt position
# (test_request_args.py reads it back from SamplingParams without a run)
REQUEST_ARGS = {
    "temperature": "0.7",
    "top_p": "0.9",
    "top_k": "20",
    "min_p": "0.01",
    "presence_penalty": "0.1",
    "frequency_penalty": "0.1",
    "repetition_penalty": "1.05",
    "seed": "7",
    "logprobs": "2",
    "stop": "never-in-random-text",
    "stop_token_ids": "3",
    "detokenize": "true",
}


@pytest.fixture(scope="module")
def vllm_observed(model_cache, tmp_path_factory):
    """One vLLM CPU run for the engine tests here: c4 under the torch profiler, c1 under the host profiler, every
    request with every request arg vLLM takes (test_request_args.py's known answers, read back). The profiler runs
    without Python stacks (a profiler option passed through): with them, writing its trace took 50 s of CPU. It
    stops after 16 worker steps (vLLM's max_iterations): its stop builds a table of the window's events, which took
    18 s for the whole c4 cell (the test's setup: 90 -> 76 s)."""
    pytest.importorskip("vllm")
    from tests.conftest import ROOT, VLLM_DEFAULT_LAYOUT, run_cli

    out = tmp_path_factory.mktemp("vllm-observed")  # vLLM's default layout: the host profile looks for its worker
    result = run_cli(
        [
            "--engine",
            "vllm",
            "--scenario",
            "concurrent",
            "--concurrency",
            "1,4",
            "--num-requests",
            "8",
            "--output-tokens",
            "32",
            "--engine-arg",
            "vllm.enforce_eager=true",
            "--engine-arg",
            "vllm.max_model_len=4096",
            "--engine-arg",
            'vllm.profiler_config={"torch_profiler_with_stack": false, "max_iterations": 16}',
            "--profile",
            "c4-in512",
            "--host-profile",
            "c1-in512",
            "--out",
            str(out),
            *(a for pair in REQUEST_ARGS.items() for a in ("--request-arg", "=".join(pair))),
        ],
        model_cache,
        ROOT,
        env=VLLM_DEFAULT_LAYOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("vllm_concurrent_*.json")
    return json.loads(path.read_text())


@pytest.mark.engine
def test_vllm_step_timeline_and_profiler_window_on_the_cpu_build(vllm_observed):
    c1, c4 = vllm_observed["cells"]
    for cell in (c1, c4):
        rows = [row for row in cell["telemetry"]["rows"] if "step" in row]
        steps = [row["step"] for row in rows]
        assert steps == list(range(steps[0], steps[0] + len(steps)))  # one row per engine step, none missing
        assert sum(row.get("new_tokens", 0) for row in cell["telemetry"]["rows"]) == sum(
            r["output_tokens"] for r in cell["requests"]
        )
        in_flight = [row["running"] + row["waiting"] for row in rows]
        assert np.median(in_flight) == cell["config"]["concurrency"]  # a closed loop keeps every worker's request in
    assert c4["telemetry"]["summary"]["kv_cache_usage_peak"] > c1["telemetry"]["summary"]["kv_cache_usage_peak"]
    assert c4["profiled"]["started"] and any(name.endswith(".pt.trace.json.gz") for name in c4["profiled"]["files"])
    assert any(w.startswith("profiled:") for w in c4["warnings"]) and "profiled" not in c1
    assert 0 < c1["harness"]["loop_thread_cpu_share"] <= c1["harness"]["process_cpu_share"] + 0.05


@pytest.mark.engine
def test_vllm_info_logs_keep_its_per_step_stat_logger_off():
    """VLLM_LOGGING_LEVEL=INFO (for the start phases) would make StatLoggerManager add LoggingStatLogger, which logs
    one line per engine step on the harness's loop with iteration details on; the adapter's logging config holds
    that one logger at WARNING, and it holds when vLLM configures logging again (0.32 does, building the engine)."""
    code = (
        "from engines.vllm.telemetry import quiet_step_logger\n"
        "print(quiet_step_logger() is not None)\n"
        "import logging, vllm.logger, vllm.v1.metrics.loggers as loggers\n"
        "vllm.logger._configure_vllm_root_logger()\n"  # 0.26 does this at import, 0.32 when the engine is built
        "vllm.logger._configure_vllm_root_logger()\n"
        "print(loggers.logger.isEnabledFor(logging.INFO), "
        "logging.getLogger('vllm.v1.worker.gpu_worker').isEnabledFor(logging.INFO))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO"},
    )
    assert run.stdout.split() == ["True", "False", "True"], run.stderr[-2000:]  # start-phase INFO lines stay on


@pytest.mark.engine
def test_vllm_host_profile_finds_its_processes_by_role_and_their_phases_cover_their_samples(vllm_observed):
    """--host-profile on vLLM's CPU build (tests/test_anatomy.py has the known-answer and the rules)."""
    c1, c4 = vllm_observed["cells"]
    assert "host_profile" not in c4  # only the cell asked for
    processes = {p["role"]: p for p in c1["host_profile"]["processes"]}
    assert {"harness", "engine_core", "worker"} <= set(processes), processes.keys()
    assert len({p["pid"] for p in processes.values()}) == len(processes)
    for role in ("engine_core", "worker"):
        process = processes[role]
        assert process["samples"] > 100 and sum(p["share"] for p in process["phases"].values()) == pytest.approx(1.0)
        assert process["phases"]["other"]["share"] < 0.2, (role, process["phases"], process["other_leaves"])
    assert processes["worker"]["phases"]["model_forward"]["share"] > 0.3  # the worker runs the model
    # on the CPU build the EngineCore spins in shm_broadcast (sched_yield) while its worker computes: waiting, on
    # CPU; how much CPU depends on the neighbours (0.7 of a core alone on 2 cores, 0.036 once in CI beside another
    # engine test: sched_yield hands the core to any runnable process), so only its presence is asserted
    core = processes["engine_core"]
    assert core["phases"]["waiting"]["share"] > 0.3 and 0 < core["cpu_share"] < 2
    assert any(w.startswith("host profile: py-spy sampled") for w in c1["warnings"])


@pytest.mark.engine
def test_every_request_arg_reaches_vllms_sampling_params_and_logprobs_come_back(vllm_observed):
    expected = {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.01,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "repetition_penalty": 1.05,
        "seed": 7,
        "logprobs": 2,
        "stop": ["never-in-random-text"],
        "stop_token_ids": [3],
        "detokenize": True,
    }
    assert set(expected) == set(REQUEST_ARGS)
    for cell in vllm_observed["cells"]:
        recorded = cell["config"]["request_args"]
        assert recorded["passed"] == expected and recorded["effective"] == expected  # read back from SamplingParams
        for r in cell["requests"]:  # min_tokens = max_tokens: a stop id before the end does not cut the request
            assert r["ok"] and r["output_tokens"] == 32 and r["logprob_tokens"] == 32
