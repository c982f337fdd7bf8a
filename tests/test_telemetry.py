"""Engine telemetry joined to the per-token stamps: the join and summaries on constructed rows (unit), the
/metrics parser, and on vLLM's CPU build for real (engine): the stat-logger timeline, the profiler window and
the host profile, from one run."""

import asyncio
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from compare.analysis.telemetry import itl_by_step_kind, summarize_telemetry
from engines.prometheus import prometheus_values
from tests.fakes import MS, record


@pytest.mark.unit
def test_each_token_gap_goes_to_the_step_that_delivered_it():
    # steps every 10 ms; the step at 20 ms also ran a prefill; a request's chunks arrive 1 ms after each step
    rows = [{"t_ns": t * MS, "running": 1, "prefill_tokens": 100 if t == 20 else 0} for t in (0, 10, 20, 30, 40)]
    r = record([1, 11, 21, 31, 41])  # sent at 0: chunks at 1, 11, 21, 31, 41 ms
    split = itl_by_step_kind(rows, [r])
    assert split["with_prefill_in_step"] == {"count": 1, "p50": 10.0, "p99": 10.0}  # the gap ending at 21 ms
    assert split["decode_only"]["count"] == 3


@pytest.mark.unit
def test_the_summary_gives_batch_waiting_time_and_kv_peak():
    rows = [{"t_ns": 0, "running": 2, "waiting": 1, "kv_cache_usage": 0.1}, {"t_ns": 30 * MS, "running": 3, "waiting": 0,
            "kv_cache_usage": 0.4}, {"t_ns": 100 * MS, "running": 1, "waiting": 0, "kv_cache_usage": 0.2}]  # fmt: skip
    summary = summarize_telemetry(rows, [], wall_ns=100 * MS)
    assert summary["running_mean"] == 2 and summary["running_max"] == 3
    assert summary["waiting_time_share"] == pytest.approx(0.3) and summary["kv_cache_usage_peak"] == 0.4
    assert summary["itl_ms_by_step"] is None  # polled rows say nothing about prefills


@pytest.mark.unit
def test_prometheus_gauges_are_read_and_summed_over_labels():
    text = ('# HELP vllm:num_requests_running x\nvllm:num_requests_running{model_name="m",engine="0"} 3.0\n'
            'vllm:num_requests_running{model_name="m",engine="1"} 1.0\nvllm:kv_cache_usage_perc{model_name="m"} 0.25\n')  # fmt: skip
    values = prometheus_values(text)
    assert values["vllm:num_requests_running"] == 4.0 and values["vllm:kv_cache_usage_perc"] == 0.25


class FakePolledEngine:
    """A FAKE engine whose telemetry snapshot takes a known 10 ms (an asyncio sleep) and which the harness polls
    every 40 ms: each poll cycle lasts 50 ms, of which 10 ms, one fifth, are spent answering."""

    telemetry_poll_interval_s = 0.04

    async def telemetry_snapshot(self):
        await asyncio.sleep(0.010)
        return {"running": 1, "waiting": 0}


@pytest.mark.unit
@pytest.mark.exclusive  # real timers
def test_telemetry_polls_are_timed_and_a_costly_polling_is_a_warning(tmp_path):
    from compare.analysis.checks import poll_warnings
    from compare.run.observe import CellObserver

    async def watch_one_second():
        observer = CellObserver(FakePolledEngine(), "c1", None, tmp_path)
        await observer.start()
        origin_ns = time.perf_counter_ns()
        await asyncio.sleep(1.0)
        return await observer.stop(origin_ns)

    telemetry = asyncio.run(watch_one_second())["telemetry"]
    polls = telemetry["polls"]
    assert telemetry["source"] == "polled every 40 ms" and polls["interval_ms"] == 40
    assert 15 <= polls["count"] <= 21  # 1 s / 50 ms, less what a loaded CI host's late wake-ups cost
    assert 10 <= polls["p50_ms"] < 20 and polls["busy_share"] == pytest.approx(polls["count"] * 0.010, abs=0.05)
    assert 0.15 <= polls["busy_share"] <= 0.3
    (warning,) = poll_warnings(polls)
    assert warning.startswith("telemetry polls took") and "metrics_interval_s" in warning
    assert poll_warnings({**polls, "busy_share": 0.006}) == []  # vLLM's /metrics every 1 s: 6 ms each


@pytest.mark.unit
def test_an_engine_polled_never_has_no_polled_telemetry(tmp_path):
    from compare.run.observe import CellObserver

    class NeverPolled(FakePolledEngine):
        telemetry_poll_interval_s = 0

    async def watch():
        observer = CellObserver(NeverPolled(), "c1", None, tmp_path)
        await observer.start()
        await asyncio.sleep(0.1)
        return await observer.stop(time.perf_counter_ns())

    assert "telemetry" not in asyncio.run(watch())


@pytest.mark.unit
def test_the_http_engine_scrapes_metrics_every_second_by_default_and_refuses_a_negative_interval(config_only_model):
    from engines.base import UsageError
    from engines.http_openai import HttpCompletionsEngine
    from workloads.models import resolve_model

    model = resolve_model(str(config_only_model))
    assert HttpCompletionsEngine(model, {"endpoint": "http://127.0.0.1:1"}).telemetry_poll_interval_s == 1.0
    assert HttpCompletionsEngine(model, {"endpoint": "http://x", "metrics_interval_s": "0"}).telemetry_poll_interval_s == 0
    with pytest.raises(UsageError, match="metrics_interval_s must be >= 0"):
        HttpCompletionsEngine.check_args({"metrics_interval_s": "-1"})


# every key vLLM takes but prompt_logprobs, which costs a log-softmax and a detokenization per prompt position
# (test_request_args.py reads it back from SamplingParams without a run)
REQUEST_ARGS = {"temperature": "0.7", "top_p": "0.9", "top_k": "20", "min_p": "0.01", "presence_penalty": "0.1",
                "frequency_penalty": "0.1", "repetition_penalty": "1.05", "seed": "7", "logprobs": "2",
                "stop": "never-in-random-text", "stop_token_ids": "3", "detokenize": "true"}


@pytest.fixture(scope="module")
def vllm_observed(model_cache, tmp_path_factory):
    """One vLLM CPU run for the engine tests here: c4 under the torch profiler, c1 under the host profiler, every
    request with every request arg vLLM takes (test_request_args.py's known answers, read back). The profiler runs
    without Python stacks (a profiler option passed through): with them, writing its trace took 50 s of CPU."""
    pytest.importorskip("vllm")
    from tests.conftest import ROOT, VLLM_DEFAULT_LAYOUT, run_cli

    out = tmp_path_factory.mktemp("vllm-observed")  # vLLM's default layout: the host profile looks for its worker
    result = run_cli(["--engine", "vllm", "--scenario", "concurrent", "--concurrency", "1,4", "--num-requests", "8",
                      "--output-tokens", "32", "--engine-arg", "vllm.enforce_eager=true", "--engine-arg",
                      "vllm.max_model_len=4096", "--engine-arg", 'vllm.profiler_config={"torch_profiler_with_stack": false}',
                      "--profile", "c4-in512", "--host-profile", "c1-in512", "--out", str(out),
                      *(a for pair in REQUEST_ARGS.items() for a in ("--request-arg", "=".join(pair)))],
                     model_cache, ROOT, env=VLLM_DEFAULT_LAYOUT)  # fmt: skip
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
        assert sum(row.get("new_tokens", 0) for row in cell["telemetry"]["rows"]) == sum(r["output_tokens"] for r in cell["requests"])
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
    code = ("from engines.vllm_telemetry import quiet_step_logger\n"
            "print(quiet_step_logger() is not None)\n"
            "import logging, vllm.logger, vllm.v1.metrics.loggers as loggers\n"
            "vllm.logger._configure_vllm_root_logger()\n"  # 0.26 does this at import, 0.32 when the engine is built
            "vllm.logger._configure_vllm_root_logger()\n"
            "print(loggers.logger.isEnabledFor(logging.INFO), logging.getLogger('vllm.v1.worker.gpu_worker').isEnabledFor(logging.INFO))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO"})  # fmt: skip
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
    expected = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.01, "presence_penalty": 0.1,
                "frequency_penalty": 0.1, "repetition_penalty": 1.05, "seed": 7, "logprobs": 2,
                "stop": ["never-in-random-text"], "stop_token_ids": [3], "detokenize": True}  # fmt: skip
    assert set(expected) == set(REQUEST_ARGS)
    for cell in vllm_observed["cells"]:
        recorded = cell["config"]["request_args"]
        assert recorded["passed"] == expected and recorded["effective"] == expected  # read back from SamplingParams
        for r in cell["requests"]:  # min_tokens = max_tokens: a stop id before the end does not cut the request
            assert r["ok"] and r["output_tokens"] == 32 and r["logprob_tokens"] == 32
