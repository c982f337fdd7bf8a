"""The real transformers engine on CPU, end to end, on tiny-llama3 with the real Llama-3 tokenizer."""

import asyncio
import json

import pytest

from compare.report.command import main as report_main
from engines.base import EngineUnavailable, Request
from engines.hf_transformers import HFTransformersEngine
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def smoke_results(model_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    result = run_cli(["--engine", "hf", "--scenario", "smoke", "--out", str(out)], model_cache, ROOT)
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("hf_smoke_*.json")
    return path, json.loads(path.read_text()), result.stdout


def test_smoke_writes_a_complete_versioned_results_file(smoke_results):
    _, doc, stdout = smoke_results
    assert doc["schema_version"] == 2 and doc["status"] == "complete"
    assert doc["variant"] == {"of": "hf", "kind": "inprocess", "engine_args": {}}
    assert doc["engine"]["name"] == "hf" and doc["engine"]["capabilities"]["continuous_batching"] is False
    assert doc["engine"]["model"]["dtype"] == "bfloat16"
    assert doc["metadata"]["packages"]["transformers"] and doc["metadata"]["cpu"]["model"]
    assert doc["model"]["preset"] == "tiny-llama3"
    assert [c["cell_id"] for c in doc["cells"]] == ["c1-in32", "c2-in32"]
    assert "TTFT p50" in stdout and "results:" in stdout


def test_every_request_has_one_timestamp_per_output_token_and_the_exact_lengths(smoke_results):
    _, doc, _ = smoke_results
    for cell in doc["cells"]:
        assert len(cell["requests"]) == 4 and len(cell["warmups"]) == 1
        for r in cell["requests"] + cell["warmups"]:
            assert r["ok"] and r["finish_reason"] == "length"
            assert r["output_tokens"] == r["target_output_tokens"] == 16 == len(r["chunk_ns"])
            assert r["chunk_tokens"] == [1] * 16  # one put() per token: one chunk per token
            assert r["prompt_tokens"] == r["prompt_tokens_reported"] == 32
            assert r["chunk_ns"] == sorted(r["chunk_ns"]) and r["chunk_ns"][-1] <= r["end_ns"]


def test_engine_side_timestamps_are_ordered_before_the_harness_receipt(smoke_results):
    _, doc, _ = smoke_results
    for r in doc["cells"][0]["requests"]:
        stamps = r["engine"]["timestamps_ns"]
        assert 0 <= stamps["generate_start"] <= stamps["first_token"] <= r["chunk_ns"][0]
        assert r["engine"]["clock_consistent"] and r["engine"]["delivery_lag_ns"] >= 0


def test_summaries_recompute_identically_from_the_raw_records(smoke_results, capsys, tmp_path):
    path, doc, _ = smoke_results
    assert report_main([str(path), "--recompute", "--out", str(tmp_path / "report")]) == 0
    assert "c2-in32" in capsys.readouterr().out
    from compare.analysis.summaries import summarize_cell
    from compare.results.store import load

    for cell in load(path)["cells"]:
        again = summarize_cell(cell["requests"], cell["config"], doc["engine"]["capabilities"], cell["cache_resets"])
        assert again["summary"] == cell["summary"]


def test_hf_refuses_a_config_only_model(model_cache):
    from workloads.models import resolve_model

    with pytest.raises(EngineUnavailable, match="config and tokenizer only"):
        HFTransformersEngine(resolve_model("synthetic:llama-3.1-8b", model_cache), {})


def test_a_timed_out_request_stops_the_worker_and_the_next_one_runs(tiny_llama3):
    from compare.run.runner import closed_loop

    async def go():
        engine = HFTransformersEngine(tiny_llama3, {})
        await engine.start()
        slow = Request("slow", tuple(range(100, 132)), 2000, 2000)
        quick = Request("quick", tuple(range(100, 132)), 4, 4)
        records = await closed_loop(engine, (slow, quick), 1, timeout_s=1.0)
        await engine.stop()
        return records

    slow, quick = asyncio.run(go())
    assert not slow.ok and slow.error.startswith("timeout") and 0 < slow.output_tokens < 2000
    assert quick.ok and quick.output_tokens == 4
