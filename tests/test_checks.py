"""Every condition that skews a number produces a stored warning."""

import pytest

from compare.analysis.checks import cell_warnings
from compare.analysis.metrics import summarize
from tests.fakes import record

pytestmark = pytest.mark.unit
CAPS = {"max_concurrent_requests": None}


def config(**overrides):
    return {"concurrency": 1, "prompt_mode": "distinct", "inexact_text_prompts": 0, **overrides}


def warnings_for(records, caps=CAPS, resets=(), **cfg):
    return cell_warnings(records, summarize(records), config(**cfg), caps, list(resets))


def test_steady_samples_give_no_warning():
    records = [record([10, 20, 30], sent_ms=40 * i) for i in range(5)]
    assert warnings_for(records) == []


def test_coefficient_of_variation_of_ten_percent_or_more_warns():
    records = [record([10, 20]), record([30, 40], sent_ms=100)]
    assert any(w.startswith("unstable: TTFT") for w in warnings_for(records))


def test_early_eos_is_flagged():
    short = record([10, 20], target_output_tokens=256, finish_reason="stop")
    assert any(
        "early stop: 1 requests ended before 256 tokens (finish_reason stop)" in w for w in warnings_for([short])
    )


def test_a_cell_that_asks_for_outputs_to_end_at_eos_flags_only_other_ends_and_reports_their_lengths():
    at_eos = record([10, 20], target_output_tokens=256, finish_reason="stop")
    aborted = record([10, 20, 30], target_output_tokens=256, finish_reason="abort", sent_ms=50)
    warnings = warnings_for([at_eos, aborted], ignore_eos=False)
    assert [w for w in warnings if w.startswith("early stop")] == [
        "early stop: 1 requests ended before 256 tokens (finish_reason abort); their tokens still count"
    ]
    lengths = summarize([at_eos, aborted])["output_tokens"]
    assert (lengths["min"], lengths["max"], lengths["p50"]) == (2, 3, 2.5)


def test_engine_prompt_count_differing_from_target_is_flagged_as_truncation():
    r = record([10, 20], prompt_tokens=4096, prompt_tokens_reported=2048)
    assert any("engine counted 2048 tokens for a 4096-token prompt" in w for w in warnings_for([r]))


def test_cached_tokens_with_distinct_prompts_is_a_warm_cache_warning():
    r = record([10, 20], cached_tokens=512)
    assert any(w.startswith("warm cache: 1 of 1") for w in warnings_for([r]))


def test_cached_tokens_with_the_same_prompt_is_reported_as_by_design():
    r = record([10, 20], cached_tokens=496)
    assert any(w.startswith("warm cache by design") for w in warnings_for([r], prompt_mode="same"))
    # a language-pairs cell (korean, speculative) asks one text per request: warm by design, not "distinct prompts"
    (warning,) = [w for w in warnings_for([r], prompt_mode="language-pairs") if w.startswith("warm cache")]
    assert warning.startswith("warm cache by design: every request of the cell asks the same text")


def test_failed_requests_and_failed_cache_resets_are_reported():
    bad = record([10], ok=False)
    found = warnings_for([record([10, 20]), bad], resets=[{"when": "after warmups", "ok": False, "error": "busy"}])
    assert any(w.startswith("failed: 1 of 2 requests (first: boom)") for w in found)
    assert any(w.startswith("cache reset after warmups failed (busy)") for w in found)


def test_engine_that_serves_one_request_at_a_time_warns_about_queueing():
    records = [record([10, 20]), record([10, 20])]
    found = warnings_for(records, caps={"max_concurrent_requests": 1}, concurrency=2)
    assert any(w.startswith("engine queueing") for w in found)


def test_fewer_requests_than_workers_is_flagged():
    assert any(w.startswith("concurrency: only 1 requests") for w in warnings_for([record([10, 20])], concurrency=8))
