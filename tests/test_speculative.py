"""Speculative decoding figures (compare/analysis/speculative.py): known answers from the null engine (a fake) that
drafts a fixed pattern, and the stream-against-engine agreement on hand-made records."""

import json

import pytest

from compare.analysis.speculative import counter_agreement, speculative_figures
from compare.results.records import RequestRecord
from tests.test_report import null_run

pytestmark = pytest.mark.unit


def test_a_fake_drafting_a_fixed_pattern_reports_exactly_that_patterns_acceptance(tmp_path, config_only_model):
    # K = 4, accepted 4, 0, 2, 4, 0, ... : 31 decode steps after the first token of 32 -> the pattern's shares
    path = null_run(
        tmp_path,
        config_only_model,
        "0.5",
        "--engine-arg",
        "spec_tokens=4",
        "--engine-arg",
        "spec_accepted=4,0,2",
        output_tokens=31,
        repetitions=6,
    )
    (cell,) = json.loads(path.read_text())["cells"]
    figures = cell["speculative"]
    # 31 tokens: 1 (prefill) + steps of 5, 1, 3 three times and a last 5 cut to 3 by the length: 10 steps whose
    # engine counts are accepted 4, 0, 2 three times and 4 (22 of 40 drafted)
    counts = figures["per_request"]
    assert counts["verified_steps"] == 6 * 10
    assert counts["accepted_tokens"] == 6 * 22 and counts["draft_tokens"] == 6 * 40
    assert counts["acceptance_rate"] == pytest.approx(22 / 40)
    assert counts["acceptance_length"] == pytest.approx(1 + 22 / 10)
    assert [p["accepted_share"] for p in counts["by_position"]] == pytest.approx([0.7, 0.7, 0.4, 0.4])
    assert figures["stream"]["step_share_by_tokens"] == pytest.approx({"1": 0.3, "3": 0.4, "5": 0.3})
    assert figures["stream"]["tokens_per_step_mean"] == pytest.approx(3.0)
    assert figures["agreement"]["disagree"] == 0 and not any("speculative" in w for w in cell["warnings"])
    assert figures["stream"]["step_ms"]["count"] == 60


def test_a_fake_without_drafts_has_no_speculative_figures(tmp_path, config_only_model):
    path = null_run(tmp_path, config_only_model, "0.5", output_tokens=8, repetitions=2)
    assert "speculative" not in json.loads(path.read_text())["cells"][0]


def _record(chunks: list[int], accepted: list[int], drafted: int = 4) -> RequestRecord:
    spec = {"num_spec_tokens": drafted, "per_step_drafted": [drafted] * len(accepted), "per_step_accepted": accepted}
    return RequestRecord(
        "r0",
        16,
        sum(chunks),
        chunk_ns=[i * 1_000_000 for i in range(len(chunks))],
        chunk_tokens=chunks,
        output_tokens=sum(chunks),
        engine={"spec_decode": spec},
    )


@pytest.mark.parametrize(
    "chunks, accepted",
    [
        ([1, 1, 5, 5, 1], [0, 4, 4, 0]),  # as verified
        ([1, 5, 5, 2], [4, 4, 3]),  # a stop cut the last step to 2 of its 4 tokens
        ([1, 5, 5, 1], [4, 4, 3]),  # ... or to 1
    ],
)
def test_the_stream_agrees_with_the_engine_counts_including_a_last_step_cut_by_a_stop(chunks, accepted):
    figures = speculative_figures([_record(chunks, accepted)], None)
    assert figures["agreement"]["disagree"] == 0 and counter_agreement(figures) is None


def test_a_chunk_that_merged_two_steps_is_reported_as_a_disagreement():
    # the engine verified 4 then 0 accepted (5 + 1 tokens), the stream got them as one chunk of 6
    figures = speculative_figures([_record([1, 6, 1], [4, 0, 0])], None)
    assert figures["agreement"]["disagree"] == 1
    assert "disagree with the engine's counts on 1 of 1" in counter_agreement(figures)


def test_per_step_counters_that_differ_from_per_request_counts_are_warned():
    rows = [{"t_ns": 1, "spec_drafts": 2, "spec_draft_tokens": 8, "spec_accepted_tokens": 5}]
    figures = speculative_figures([_record([1, 5, 1], [4, 0])], rows)
    assert figures["per_step"]["acceptance_length"] == pytest.approx(1 + 5 / 2)
    assert "per-request counts 4 accepted tokens, per-step counters 5" in counter_agreement(figures)


def test_a_servers_polled_cumulative_counters_give_the_cells_figures_as_last_less_first():
    rows = [
        {
            "t_ns": 0,
            "running": 1,
            "spec_drafts_total": 10,
            "spec_draft_tokens_total": 40,
            "spec_accepted_tokens_total": 30,
        },
        {
            "t_ns": 5,
            "running": 1,
            "spec_drafts_total": 14,
            "spec_draft_tokens_total": 56,
            "spec_accepted_tokens_total": 38,
        },
    ]
    figures = speculative_figures([], rows)
    assert figures["per_step"]["source"] == "polled /metrics"
    assert (figures["per_step"]["drafts"], figures["per_step"]["accepted_tokens"]) == (4, 8)
    assert figures["per_step"]["acceptance_length"] == pytest.approx(3.0)
    assert speculative_figures([], [{**rows[0]}, {**rows[0], "t_ns": 5}]) is None  # no draft in the cell
