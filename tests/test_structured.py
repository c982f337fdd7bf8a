"""Structured output: the project's constraints and their modes, the output checker, each engine's request
carrying a constraint, the known answer from the null engine (a FAKE: a compile delay per new constraint and a
mask cost per token). vLLM's CPU build for real: tests/test_vllm_engine.py (every output validates; unique pays the
compile)."""

import json

import jsonschema
import pytest

from compare.analysis.structured import structured_summary
from compare.results.recorder import StreamRecorder
from engines.base import Chunk, Request, UsageError
from engines.constraints import Constraint, choice_gbnf, http_structured, sglang_structured
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)
from workloads.scenario_files import build_scenario
from workloads.structured import CACHED, SCHEMAS, check_output, constraints_for, library
from tests.bounds import near

STRUCTURED = {
    "name": "s",
    "concurrency": [1],
    "input_tokens": [32],
    "output_tokens": 64,
    "ignore_eos": False,
    "structured": ["none", "cached", "unique"],
    "num_requests": 8,
    "warmup_requests": 2,
}


@pytest.mark.unit
def test_every_schema_is_valid_json_schema_and_bounded_so_a_grammar_ends():
    assert len(SCHEMAS) == 20
    for name, schema in SCHEMAS.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        text = json.dumps(schema)
        assert '"type": "string"' not in text.replace('"type": "string", "maxLength"', ""), name  # every string bounded
        assert text.count('"type": "array"') == text.count('"maxItems"'), name
        assert text.count('"type": "integer"') == text.count('"maximum"'), name


@pytest.mark.unit
def test_the_checker_tells_valid_from_invalid_and_unparsable():
    nested = Constraint("json", CACHED["json"], library("json")[CACHED["json"]])
    assert check_output(nested, '{"user": {"name": "ada", "age": 36}, "active": true}') == {
        "parses": True,
        "valid": True,
    }
    too_old = check_output(nested, '{"user": {"name": "ada", "age": 300}, "active": true}')
    assert too_old["parses"] and not too_old["valid"] and "300" in too_old["error"]
    cut = check_output(nested, '{"user": {"name": "ada", "ag')
    assert cut["parses"] is False and cut["valid"] is False and cut["error"].startswith("does not parse")
    date = Constraint("regex", "date", library("regex")["date"])
    assert check_output(date, "2026-12-05")["valid"] and not check_output(date, "2026-13-05")["valid"]
    choice = Constraint("choice", "yes-no", library("choice")["yes-no"])
    assert check_output(choice, "yes")["valid"] and not check_output(choice, "yes!")["valid"]
    assert check_output(choice, None) == {"parses": None, "valid": None}  # no text (the null fake): not judged


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["json", "regex", "choice"])
def test_cached_reuses_one_constraint_and_unique_gives_each_request_its_own(kind):
    assert constraints_for(kind, "none", 3, "c") == [None] * 3
    cached = constraints_for(kind, "cached", 5, "c")
    assert len(set(cached)) == 1 and cached[0].name == CACHED[kind]
    unique = constraints_for(kind, "unique", 30, "c")
    assert len({c.value for c in unique}) == len({c.name for c in unique}) == 30
    if kind == "json":  # still the library's schema, plus a field of its own: the library's example still validates
        extra = unique[6].schema["properties"]
        assert any(key.startswith("x_c6") for key in extra) and unique[6].name.startswith("07-nested-object/u")
        assert check_output(unique[6], '{"user": {"name": "ada", "age": 36}, "active": true}')["valid"]


@pytest.mark.unit
def test_a_structured_scenario_has_a_cell_per_mode_and_cached_warmups_share_the_constraint(llama3_tokenizer):
    from workloads.plan import plan_scenario

    scenario = build_scenario(STRUCTURED)
    plans = plan_scenario(scenario, llama3_tokenizer, 8192)
    assert [p.spec.cell_id for p in plans] == ["c1-in32-none", "c1-in32-cached", "c1-in32-unique"]
    none, cached, unique = plans
    assert all(r.constraint is None for r in none.requests + none.warmups)
    assert {r.constraint for r in cached.requests + cached.warmups} == {cached.requests[0].constraint}
    names = [r.constraint.name for r in unique.warmups + unique.requests]
    assert len(set(names)) == len(names)  # the warmups compile none of the measured requests' grammars


@pytest.mark.unit
@pytest.mark.parametrize(
    "change, message",
    [
        ({"ignore_eos": True}, 'needs "ignore_eos": false'),
        ({"structured": ["cached", "typo"]}, "'structured' lists modes"),
        ({"structured_kind": "xml"}, "'structured_kind' must be one of json, regex, choice"),
        ({"prompt_mode": "multi-turn", "num_conversations": 1, "num_turns": 2}, "not multi-turn"),
    ],
)
def test_a_bad_structured_scenario_is_one_line_naming_the_field(change, message):
    with pytest.raises(UsageError, match=message):
        build_scenario({**STRUCTURED, **change})


@pytest.mark.unit
def test_each_engine_request_carries_the_constraint_its_own_way():
    schema = Constraint("json", "s", '{"type": "object"}')
    choice = Constraint("choice", "c", '["a.b", "c"]')
    assert sglang_structured(schema) == {"json_schema": '{"type": "object"}'}
    assert sglang_structured(choice) == {"regex": r"(a\.b|c)"}
    assert http_structured("vllm", choice) == {"structured_outputs": {"choice": ["a.b", "c"]}}
    assert http_structured("vllm", schema) == {"structured_outputs": {"json": {"type": "object"}}}
    assert http_structured("llamacpp", schema) == {"json_schema": {"type": "object"}}
    assert (
        http_structured("llamacpp", choice) == {"grammar": choice_gbnf(["a.b", "c"])}
        and choice_gbnf(["a"]) == 'root ::= "a"'
    )


@pytest.mark.unit
def test_the_record_keeps_the_output_text_and_the_summary_counts_valid_outputs():
    constraint = Constraint("choice", "yes-no", '["yes", "no"]')
    records = []
    for text in ("yes", "no", "maybe"):
        recorder = StreamRecorder(Request("r", (1,), 8, 0, ignore_eos=False, constraint=constraint), origin_ns=0)
        recorder.on_chunk(Chunk(1, text=text))
        recorder.on_chunk(Chunk(0, finish_reason="stop"))
        record = recorder.finish(None, None)
        record.structured.update(check_output(constraint, record.structured["text"]))
        records.append(record)
    summary = structured_summary(records, {"structured": {"mode": "cached", "kind": "choice"}})
    assert summary["schema_valid_rate"] == pytest.approx(2 / 3) and summary["num_checked"] == 3
    assert summary["first_invalid"][0]["text"] == "maybe" and summary["finish_reasons"] == {"stop": 3}


@pytest.mark.unit
def test_an_engine_without_constraints_exits_2_naming_the_ones_that_take_them(cli):  # noqa: F811
    assert_usage_error(cli("--engine", "hf", "--scenario", "structured"), "engine 'hf' takes no json constraints")
    assert_usage_error(
        cli("--engine", "llamacpp", "--scenario", "structured", "--structured-kind", "regex"),
        "engine 'llamacpp' takes no regex constraints (structured output); it takes json, choice",
    )


@pytest.mark.unit
def test_the_null_engines_compile_and_mask_delays_come_back_as_the_ttft_and_tpot_deltas(cli, tmp_path):  # noqa: F811
    compile_ms, mask_ms, interval_ms = 60.0, 4.0, 8.0
    code, out, err = cli(
        "--engine",
        "null",
        "--scenario",
        "structured",
        "--quick",
        "--output-tokens",
        "12",
        "--engine-arg",
        f"compile_ms={compile_ms}",
        "--engine-arg",
        f"mask_ms={mask_ms}",
        "--engine-arg",
        f"interval_ms={interval_ms}",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    cells = {cell["cell_id"].rsplit("-", 1)[1]: cell for cell in doc["cells"]}
    assert "structured" in cells["none"] and cells["none"]["structured"]["mode"] == "none"
    cached, unique = cells["cached"]["structured"], cells["unique"]["structured"]
    assert cached["num_constraints"] == 1 and unique["num_constraints"] == 10 and unique["num_checked"] == 0
    # the first token waits for the compile (unique: every request) and one masked interval; each later token, a mask
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 64.52 (headroom 0.91)
    near(unique["vs_unconstrained"]["ttft_ms_p50"]["value"], compile_ms + mask_ms, 6, "unique: TTFT p50 delta (ms)")
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 3.849 (headroom 0.95)
    near(cached["vs_unconstrained"]["ttft_ms_p50"]["value"], mask_ms, 3, "cached: TTFT p50 delta (ms), no compile")
    for summary in (cached, unique):
        tpot = summary["vs_unconstrained"]["tpot_ms_p50"]
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 3.923 (headroom 0.95)
        near(tpot["value"], mask_ms, 1.5, "TPOT p50 delta (ms): one mask per token")
        assert tpot["significant"] and tpot["low"] > 0
    assert "TTFT +" in out and "c1-in128-none" in out.split("cell c1-in128-unique")[1]  # the line names its baseline


@pytest.mark.engine
def test_llamacpp_builds_a_grammar_for_every_json_schema_and_choice_list():
    pytest.importorskip("llama_cpp")
    from engines.constraints import llamacpp_grammar

    for kind in ("json", "choice"):
        for name, value in library(kind).items():
            assert llamacpp_grammar(Constraint(kind, name, value)) is not None, name
