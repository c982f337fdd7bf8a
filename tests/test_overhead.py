"""HTTP-overhead tables from paired results (unit), and --mode both end to end on llama.cpp (engine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compare.analysis.pairs import cell_overhead, paired_runs
from compare.cli.main import main
from compare.results.store import StoredRun, variant_from_name
from engines.vllm_offline import server_flags
from tests.conftest import ROOT, run_cli
from tests.fakes import record


@pytest.mark.unit
def test_cell_overhead_gives_deltas_percentages_and_the_ttft_split():
    inproc = {
        "ttft_ms": {"p50": 10.0, "p99": 20.0},
        "itl_ms": {"p50": 4.0, "p99": 8.0},
        "output_tok_per_s": 200.0,
        "request_per_s": 2.0,
        "delivery_lag_ms": {"p50": 1.0},
    }
    http = {
        "ttft_ms": {"p50": 13.0, "p99": 26.0},
        "itl_ms": {"p50": 4.5, "p99": 9.0},
        "output_tok_per_s": 180.0,
        "request_per_s": 1.8,
    }
    row = cell_overhead(inproc, http)
    assert row["ttft_ms_p50"] == {"inprocess": 10.0, "http": 13.0, "delta": 3.0}
    assert row["itl_ms_p99"]["delta"] == 1.0
    assert row["output_tok_per_s"]["delta"] == -20.0 and row["output_tok_per_s"]["delta_pct"] == pytest.approx(-10.0)
    assert row["ttft_split_ms_p50"] == {"engine": 9.0, "inprocess_delivery": 1.0, "http_delivery": 3.0}


def stored(engine, kind, scenario="smoke", args=None, of="vllm", quick=False):
    """A FAKE stored run: just what pairing reads."""
    doc = {
        "engine": {"name": engine},
        "scenario": {"name": scenario},
        "model": {"spec": "synthetic:tiny-llama3"},
        "quick": quick,
        "variant": {"of": of, "kind": kind, "engine_args": args},
        "cells": [{"cell_id": "c1", "requests": [record([10, 20])]}],
    }
    return StoredRun(Path(f"{engine}_{scenario}.json"), doc)


@pytest.mark.unit
def test_stored_runs_pair_by_variant_scenario_model_and_args_not_by_name():
    base, http = stored("vllm", "inprocess", args={"seed": "1"}), stored("vllm-http", "http", args={"seed": "1"})
    other_args = stored("vllm-http", "http", args={"seed": "2"})
    other_scenario = stored("vllm-http", "http", scenario="single", args={"seed": "1"})
    batch = stored("vllm-batch", "batch", args={"seed": "1"})
    quick = stored("vllm-http", "http", args={"seed": "1"}, quick=True)
    found = paired_runs([base, other_args, other_scenario, quick, http, batch, stored("hf", "inprocess", of="hf")])
    assert [(a.doc["engine"]["name"], b.doc["engine"]["name"], kind) for a, b, kind in found] == [
        ("vllm", "vllm-http", "http"),
        ("vllm", "vllm-batch", "batch"),
    ]


@pytest.mark.unit
def test_a_run_whose_requests_all_failed_pairs_with_nothing():
    failed = stored("vllm", "inprocess")
    failed.doc["cells"][0]["requests"] = [record([10], ok=False)]
    assert paired_runs([failed, stored("vllm-http", "http")]) == []


@pytest.mark.unit
def test_schema_1_files_pair_by_their_engine_names():
    assert variant_from_name("llamacpp-http") == {"of": "llamacpp", "kind": "http", "engine_args": None}
    v1_base = stored("llamacpp", "inprocess", of="llamacpp")
    v1_http = stored("llamacpp-http", "http", of="llamacpp")
    assert [kind for _, _, kind in paired_runs([v1_http, v1_base])] == ["http"]


@pytest.mark.unit
def test_vllm_server_gets_the_in_process_args_as_flags():
    flags = server_flags(
        {
            "model": "/m",
            "enable_prefix_caching": False,
            "enforce_eager": True,
            "max_num_seqs": 8,
            "disable_log_stats": False,
            "seed": 0,
            "enable_chunked_prefill": True,
        }
    )
    assert flags == [
        "--no-enable-prefix-caching",
        "--enforce-eager",
        "--max-num-seqs",
        "8",
        "--seed",
        "0",
        "--enable-chunked-prefill",
    ]


@pytest.mark.engine
def test_mode_both_on_llamacpp_records_the_variants_and_the_report_pairs_the_files(model_cache, tmp_path):
    pytest.importorskip("llama_cpp")
    result = run_cli(
        ["--engine", "llamacpp", "--mode", "both", "--scenario", "smoke", "--concurrency", "1", "--out", str(tmp_path)],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HTTP overhead (llamacpp-http minus llamacpp in-process):" in result.stdout
    (inproc,) = tmp_path.glob("llamacpp_smoke_*.json")
    (http,) = tmp_path.glob("llamacpp-http_smoke_*.json")
    variants = [json.loads(p.read_text())["variant"] for p in (inproc, http)]
    assert [v["kind"] for v in variants] == ["inprocess", "http"] and {v["of"] for v in variants} == {"llamacpp"}
    launched = json.loads(http.read_text())["engine"]["engine_args"]["launched"]
    assert "llama_cpp.server" in launched and "--n_threads" in launched
    assert (tmp_path / "server-llamacpp.log").exists()
    report = subprocess.run(
        [sys.executable, "-m", "compare.report", str(tmp_path), "--out", str(tmp_path / "report")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    line = next(line for line in report.stdout.splitlines() if line.strip().startswith("c1-in32: ΔTTFT p50"))
    assert "TTFT p50 = engine" in line  # the split needs the in-process engine's own first-token time


@pytest.mark.unit
def test_mode_http_refuses_engines_without_a_server(config_only_model, tmp_path, capsys):
    code = main(["--engine", "null", "--mode", "http", "--model", str(config_only_model), "--out", str(tmp_path)])
    assert code == 2 and "engine 'null' has no HTTP server mode" in capsys.readouterr().err


@pytest.mark.engine
def test_mode_both_on_vllm_reports_cached_tokens_over_http_too(model_cache, tmp_path):
    """The launched server gets --enable-prompt-tokens-details, so HTTP mode sees the prefix cache as in-process does
    (on the H100 run the HTTP results had no cached-token counts without it). HTTP mode against the real server
    counts every token exactly, resets the cache through the dev-mode endpoint, and takes the server down with it."""
    pytest.importorskip("vllm")
    psutil = pytest.importorskip("psutil")
    result = run_cli(
        [
            "--engine",
            "vllm",
            "--mode",
            "both",
            "--scenario",
            "prefix-cache",
            "--quick",
            "--output-tokens",
            "8",
            "--engine-arg",
            "vllm.enforce_eager=true",
            "--engine-arg",
            "vllm.max_model_len=4096",
            "--engine-arg",
            "vllm.cpu_threads_bind=nobind",
            "--out",
            str(tmp_path),
        ],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("vllm", "vllm-http"):
        (path,) = tmp_path.glob(f"{name}_prefix-cache_*.json")
        (cell,) = json.loads(path.read_text())["cells"]
        cached = [r["cached_tokens"] for r in cell["requests"]]
        assert cached[0] == 0 and all(c and c > 0 for c in cached[1:]), (name, cached)
    doc = json.loads(next(tmp_path.glob("vllm-http_prefix-cache_*.json")).read_text())
    launched = doc["engine"]["engine_args"]["launched"]  # gone with the run: no process has its command line
    assert "--port" in launched and not [
        p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == launched
    ]
    assert (tmp_path / "server-vllm.log").stat().st_size > 0
    for cell in doc["cells"]:
        assert cell["cache_resets"] and all(r["ok"] for r in cell["cache_resets"])  # /reset_prefix_cache in dev mode
        for r in cell["requests"]:
            assert r["output_tokens"] == r["target_output_tokens"] == sum(r["chunk_tokens"])
            assert r["prompt_tokens_reported"] == r["prompt_tokens"]
            assert r["engine"]["token_counting"] == "token_ids" and r["engine"]["token_count_mismatches"] == []
            assert (
                r["engine"]["sse_done"]
                and 1 <= len(r["chunk_ns"]) <= r["engine"]["sse_reads"] <= r["engine"]["sse_events"]
            )
        summary = cell["summary"]
        assert summary["sse_events_per_read"] == summary["sse_events_total"] / summary["sse_reads_total"] >= 1
