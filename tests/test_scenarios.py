"""Scenario data: the design doc's defaults, --quick, CLI overrides, user JSON files."""

import json

import pytest

from engines.base import UsageError
from workloads.scenario_files import apply_overrides, builtin_names, load_scenario

pytestmark = pytest.mark.unit


def test_builtin_scenarios_are_the_design_docs_five_plus_smoke_and_the_traffic_workloads():
    assert builtin_names() == [
        "batch-shapes",
        "concurrent",
        "korean",
        "long-context",
        "multi-lora",
        "multi-turn",
        "prefix-cache",
        "shared-prefix",
        "single",
        "smoke",
        "speculative",
        "structured",
        "trace",
    ]


def test_shared_prefix_has_sglang_bench_servings_defaults():
    s = load_scenario("shared-prefix")
    assert (s.num_groups, s.prompts_per_group, s.shared_prefix_tokens, s.input_tokens, s.output_tokens) == (
        64,
        16,
        2048,
        (128,),
        256,
    )
    assert [c.num_requests for c in s.cells()] == [1024, 1024] and s.group_order == "shuffled"


def test_single_matches_design_doc_5_1():
    s = load_scenario("single")
    assert (s.concurrency, s.input_tokens, s.output_tokens) == ((1,), (128, 512, 1024), 256)
    assert s.warmup_requests == 3
    assert [c.num_requests for c in s.cells()] == [10, 10, 10]


def test_concurrent_matches_design_doc_5_2():
    s = load_scenario("concurrent")
    assert s.concurrency == (1, 8, 16, 32, 64)
    assert (s.input_tokens, s.output_tokens, s.prompt_mode) == ((512,), 256, "same")
    assert {c.num_requests for c in s.cells()} == {100}


def test_long_context_matches_design_doc_5_3():
    s = load_scenario("long-context")
    assert (s.concurrency, s.input_tokens, s.output_tokens, s.repetitions) == ((1, 8), (2048, 4096), 256, 5)


def test_prefix_cache_matches_design_doc_5_4():
    s = load_scenario("prefix-cache")
    assert (s.shared_prefix_tokens, s.input_tokens, s.num_requests, s.concurrency) == (2048, (128,), 50, (1,))
    assert s.output_tokens == 256
    assert s.prompt_tokens_for(s.cells()[0]) == 2176


def test_korean_matches_design_doc_5_5():
    s = load_scenario("korean")
    assert (s.concurrency, s.output_tokens, s.repetitions, s.languages) == ((1, 8), 256, 10, ("ko", "en"))
    assert [p["kind"] for p in s.pairs] == ["short-question", "long-summary", "translation", "essay"]
    assert len(s.cells()) == 2 * 4 * 2


def test_every_scenario_uses_temperature_0_ignore_eos_and_a_300_s_timeout():
    for name in builtin_names():
        s = load_scenario(name)
        # structured output ends at its grammar's end (EOS), and a copying answer where the copy ends
        assert (s.temperature, s.ignore_eos, s.timeout_s) == (0.0, name not in ("structured", "speculative"), 300.0)


def test_quick_shrinks_counts_but_never_lengths():
    for name in builtin_names():
        full, quick = load_scenario(name), apply_overrides(load_scenario(name), True, {})
        assert (quick.input_tokens, quick.output_tokens, quick.shared_prefix_tokens) == (
            full.input_tokens,
            full.output_tokens,
            full.shared_prefix_tokens,
        )
        assert sum(c.num_requests for c in quick.cells()) <= sum(c.num_requests for c in full.cells())
        assert all(c.num_requests >= c.concurrency for c in quick.cells())


def test_cli_overrides_win_over_quick():
    s = apply_overrides(load_scenario("concurrent"), True, {"num_requests": 3, "concurrency": (2,)})
    assert [(c.concurrency, c.num_requests) for c in s.cells()] == [(2, 3)]
    s = apply_overrides(load_scenario("concurrent"), False, {"repetitions": 2})
    assert [c.num_requests for c in s.cells()] == [2, 16, 32, 64, 128]


def test_user_scenario_file_with_its_own_texts(tmp_path):
    (tmp_path / "mine.txt").write_text("Some words of my own. " * 50)
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "name": "mine",
                "concurrency": [2],
                "input_tokens": [40],
                "output_tokens": 8,
                "num_requests": 4,
                "corpus": {"en": {"file": "mine.txt"}},
            }
        )
    )
    s = load_scenario(str(path))
    assert s.corpus["en"].startswith("Some words of my own.")
    assert [c.cell_id for c in s.cells()] == ["c2-in40"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "malformed JSON at line 1"),
        ("[1, 2]", "top level must be a JSON object"),
        (
            '{"name": "x", "concurrency": [1], "output_tokens": 8, "input_tokens": [8], "bogus": 1}',
            "unknown field 'bogus'",
        ),
        ('{"name": "x", "output_tokens": 8}', "missing field 'concurrency'"),
        (
            '{"name": "x", "concurrency": ["8"], "output_tokens": 8, "input_tokens": [8]}',
            "'concurrency' must be a list of int",
        ),
        (
            '{"name": "x", "concurrency": [1], "output_tokens": 8, "input_tokens": [8], "prompt_mode": "odd"}',
            "'prompt_mode' must be one of",
        ),
    ],
)
def test_malformed_scenario_json_is_a_usage_error_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_scenario(str(path))


def test_unknown_scenario_name_lists_the_valid_ones():
    with pytest.raises(UsageError, match="valid: batch-shapes, concurrent, korean, long-context"):
        load_scenario("nope")
