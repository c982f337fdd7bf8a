"""Metric formulas against hand-computed traces."""

import numpy as np
import pytest

from compare.analysis.metrics import describe, language_summary, prefix_cache_summary, summarize
from compare.results.records import RequestRecord, itl_samples_ns
from tests.fakes import MS, record

pytestmark = pytest.mark.unit


def test_single_token_chunks_give_one_gap_per_token():
    r = record([10, 20, 35, 50])
    assert itl_samples_ns(r.chunk_ns, r.chunk_tokens).tolist() == [10 * MS, 15 * MS, 15 * MS]
    assert r.tpot_ms == pytest.approx(40 / 3)
    s = summarize([r])
    assert s["ttft_ms"]["mean"] == 10
    assert s["e2e_ms"]["mean"] == 50
    assert s["num_chunks"] == 4


def test_chunk_of_k_tokens_contributes_k_equal_gaps():
    # chunks arrive at 10 ms (1 token), 30 ms (2 tokens), 60 ms (3 tokens)
    r = record([10, 30, 30, 60, 60, 60], chunk_tokens=[1, 2, 3])
    assert r.chunk_ns == [10 * MS, 30 * MS, 60 * MS]  # one receipt time per chunk: the raw form
    gaps = itl_samples_ns(r.chunk_ns, r.chunk_tokens) / MS
    assert gaps.tolist() == [10, 10, 10, 10, 10]
    assert r.tpot_ms == pytest.approx(10)
    assert summarize([r])["tokens_per_chunk_mean"] == 2


def test_extra_tokens_of_first_chunk_have_zero_gaps_and_mean_itl_equals_tpot():
    r = record([10, 10, 40, 40, 40], chunk_tokens=[2, 3])
    gaps = itl_samples_ns(r.chunk_ns, r.chunk_tokens) / MS
    assert gaps.tolist() == [0, 10, 10, 10]
    assert len(gaps) == r.output_tokens - 1
    assert gaps.mean() == pytest.approx(r.tpot_ms)


def test_single_token_output_has_ttft_but_no_tpot_or_itl():
    r = record([25])
    s = summarize([r])
    assert s["ttft_ms"]["mean"] == 25
    assert s["tpot_ms"] == {"count": 0}
    assert s["itl_ms"] == {"count": 0}


def test_percentiles_use_linear_interpolation_like_numpy_and_vllm():
    stats = describe(range(1, 101))
    assert stats["p50"] == 50.5
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["p90"] == pytest.approx(90.1)
    assert stats["stdev"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert (stats["min"], stats["max"], stats["count"]) == (1, 100, 100)


def test_throughput_is_over_cell_wall_time_and_counts_only_completed_requests():
    a = record([100, 200], sent_ms=0, end_ms=1000, prompt_tokens=10)
    b = record([100, 200, 300], sent_ms=500, end_ms=1500, prompt_tokens=20)  # ends at 2000 ms
    failed = record([50], sent_ms=100, end_ms=200, ok=False)
    s = summarize([a, b, failed])
    assert s["wall_s"] == pytest.approx(2.0)
    assert s["output_tokens_total"] == 5
    assert s["output_tok_per_s"] == pytest.approx(2.5)
    assert s["total_tok_per_s"] == pytest.approx(35 / 2)
    assert s["request_per_s"] == pytest.approx(1.0)
    assert (s["num_ok"], s["num_failed"]) == (2, 1)


def test_prefix_cache_summary_compares_first_request_with_mean_of_later_ones():
    first = record([100, 110], end_ms=200, cached_tokens=0)
    later = [record([20, 30], sent_ms=300 * i, end_ms=100, cached_tokens=2048) for i in (1, 2)]
    s = prefix_cache_summary([first, *later])
    assert s["first_ttft_ms"] == 100
    assert s["later_ttft_ms_mean"] == 20
    assert s["ttft_speedup"] == 5
    assert s["first_output_tok_per_s"] == pytest.approx(10)
    assert s["later_output_tok_per_s_mean"] == pytest.approx(20)
    assert s["later_cached_tokens_mean"] == 2048


def test_language_summary_gives_tokens_per_char_and_chars_per_second():
    r = record([100, 200], end_ms=1000, prompt_tokens=30, prompt_chars=60, output_chars=8)
    s = language_summary([r])
    assert s["prompt_tokens_per_char"] == 0.5
    assert s["output_chars_per_s"] == pytest.approx(8.0)
    assert s["output_tokens_per_char"] == 0.25


def test_records_round_trip_through_json_and_read_schema_1_token_times():
    r = record([10, 30, 30, 60, 60, 60], chunk_tokens=[1, 2, 3], cached_tokens=4, engine={"clock": "x"})
    assert RequestRecord.from_json(r.to_json()) == r
    assert r.token_ns == [10 * MS, 30 * MS, 30 * MS, 60 * MS, 60 * MS, 60 * MS]
    v1 = {k: v for k, v in r.to_json().items() if k not in ("chunk_ns", "timing")}
    v1["token_ns"] = r.token_ns  # schema 1 stored one time per token
    assert RequestRecord.from_json(v1) == r


def test_a_failed_record_keeps_its_error_through_json():
    r = record([10], ok=False)
    back = RequestRecord.from_json(r.to_json())
    assert not back.ok and back.error == "boom"
