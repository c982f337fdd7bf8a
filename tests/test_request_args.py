"""Request features (`--request-arg`, `--sweep request.K=...`): typed and checked per engine before anything runs,
recorded per cell, and passed through. The null engine is a FAKE: it takes every key, uses none, and returns a
logprob count per token where logprobs are asked for. vLLM's CPU build reads them back for real in
test_telemetry_vllm.py (one vLLM run serves both)."""

import json

import pytest

from engines.base import UsageError

from compare.run.points.points import grid
from compare.run.points.sweep import child_argv
from engines.hf_transformers import HFTransformersEngine
from engines.request_args import typed_request_args
from engines.vllm_offline import VLLMEngine
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)
from tests.bounds import near

pytestmark = pytest.mark.unit


def test_an_unknown_key_exits_2_naming_the_nearest(cli):  # noqa: F811
    assert_usage_error(
        cli("--engine", "null", "--request-arg", "temprature=0.5"), "no request arg 'temprature'; nearest: temperature"
    )


def test_a_key_the_engine_does_not_pass_exits_2_naming_the_engine(cli):  # noqa: F811
    assert_usage_error(
        cli("--engine", "hf", "--request-arg", "logprobs=5"), "engine 'hf' does not take request arg 'logprobs'"
    )


def test_a_value_that_does_not_parse_or_a_scope_outside_the_run_exits_2(cli):  # noqa: F811
    assert_usage_error(cli("--engine", "null", "--request-arg", "temperature=hot"), "does not parse as float")
    assert_usage_error(
        cli("--engine", "null", "--request-arg", "vllm.temperature=0.5"), "engine 'vllm' is not in this run"
    )


def test_n_above_1_exits_2_on_engines_that_stream_one_sequence(cli):  # noqa: F811
    from engines.request_args import engine_request_args
    from engines.sglang_offline import SGLangEngine

    with pytest.raises(UsageError, match="engine 'sglang' streams one sequence per request here; n > 1 is stamped"):
        engine_request_args(SGLangEngine, {"n": 4}, "sglang")  # SGLang takes n; its adapter reads one stream
    assert_usage_error(cli("--engine", "null", "--request-arg", "n=0"), "n counts sequences (beams) per request")


def test_n_sequences_are_stamped_one_by_one_itl_and_tpot_per_sequence_and_tok_s_over_all(cli, tmp_path):  # noqa: F811
    """Known answer: the null engine (a FAKE) emits every sequence's token each 10 ms step, so each sequence's ITL and
    TPOT is 10 ms (the merged stream's gaps would be 10 ms and ~0), tok/s is n x one sequence's, req/s per request."""
    n, interval_ms, tokens = 3, 10.0, 16
    code, _, err = cli(
        "--engine",
        "null",
        "--scenario",
        "single",
        "--quick",
        "--output-tokens",
        str(tokens),
        "--request-arg",
        f"n={n}",
        "--engine-arg",
        f"interval_ms={interval_ms}",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    cell = json.loads(next(tmp_path.glob("*.json")).read_text())["cells"][0]
    for r in cell["requests"]:
        assert r["output_tokens"] == n * tokens and sorted(set(r["chunk_sequence"])) == list(range(n))
    s = cell["summary"]
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.4 (headroom 0.80)
    near(s["itl_ms"]["p50"], interval_ms, 0.2 * interval_ms, "ITL p50 per sequence (ms); merged, half would be ~0")
    # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.07 (headroom 0.97)
    near(s["tpot_ms"]["p50"], interval_ms, 0.2 * interval_ms, "TPOT p50 per sequence (ms); merged, it would be a third")
    assert s["sequences_total"] == n * s["num_ok"] and s["output_tokens_total"] == n * tokens * s["num_ok"]
    assert s["output_tok_per_s"] == pytest.approx(n * s["request_per_s"] * tokens, rel=0.01)
    assert not any(w.startswith("early stop") for w in cell["warnings"])


def test_values_are_typed_and_stops_take_one_string_or_a_list():
    keys = VLLMEngine.request_keys
    typed = typed_request_args(
        "vllm",
        {"stop": "END", "stop_token_ids": "1,2", "top_k": "50", "seed": "none", "detokenize": "false", "n": "1"},
        keys,
    )
    assert typed == {"stop": ["END"], "stop_token_ids": [1, 2], "top_k": 50, "seed": None, "detokenize": False, "n": 1}
    assert typed_request_args("vllm", {"stop": '["a", "b"]'}, keys) == {"stop": ["a", "b"]}
    assert HFTransformersEngine.request_keys["temperature"] == "temperature"


def test_a_run_records_the_args_per_cell_and_the_fake_returns_logprobs(cli, tmp_path):  # noqa: F811
    code, _, err = cli(
        "--engine",
        "null",
        "--request-arg",
        "temperature=0.8",
        "--request-arg",
        "null.logprobs=5",
        "--request-arg",
        "stop=END",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["engine"]["request_args"] == {"passed": {"temperature": 0.8, "logprobs": 5, "stop": ["END"]}}
    for cell in doc["cells"]:
        assert cell["config"]["request_args"]["passed"]["logprobs"] == 5
        assert all(r["logprob_tokens"] == r["output_tokens"] > 0 for r in cell["requests"])


def test_without_request_args_every_request_is_greedy_and_nothing_is_recorded(cli, tmp_path):  # noqa: F811
    code, _, err = cli("--engine", "null", "--out", str(tmp_path))
    assert code == 0, err
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["engine"]["request_args"] == {} and all("logprob_tokens" not in r for r in doc["cells"][0]["requests"])


def test_a_request_sweep_gives_each_point_its_request_args_not_engine_args(tmp_path):
    from compare.run.config import RunConfig

    points = grid(("null",), ("request.temperature=0,0.8", "interval_ms=1,2"), "inprocess")
    assert [p.label for p in points][:2] == [
        "request.temperature=0,interval_ms=1",
        "request.temperature=0,interval_ms=2",
    ]
    assert points[3].request_args == ("null.temperature=0.8",) and points[3].engine_args == ("null.interval_ms=2",)
    argv = child_argv(RunConfig(engines=("null",), scenarios=()), points[3], tmp_path)
    assert argv[argv.index("--request-arg") + 1] == "null.temperature=0.8"


def test_vllms_own_check_of_the_combination_exits_2_before_it_starts(cli):  # noqa: F811
    pytest.importorskip("vllm")
    assert_usage_error(
        cli("--engine", "vllm", "--request-arg", "stop=END", "--request-arg", "detokenize=false"),
        "stop strings are only supported when detokenize is True",
    )


def test_each_adapter_puts_the_args_in_its_own_request_type(config_only_8b):
    import asyncio

    from engines.base import Request
    from engines.http_openai import HttpCompletionsEngine
    from engines.sglang_offline import SGLangEngine
    from tests.test_sglang_adapter import FakeSGLangRuntime

    request = Request("r0", (1, 2, 3), 4, 4)
    http = HttpCompletionsEngine(None, {"endpoint": "http://fake", "server": "vllm"})
    http.request_args = {"temperature": 0.8, "stop": ["END"], "logprobs": 5}
    body = http._body(request)
    assert (body["temperature"], body["stop"], body["logprobs"], body["max_tokens"]) == (0.8, ["END"], 5, 4)

    runtime = FakeSGLangRuntime([2, 2], gap_s=0)  # a FAKE sglang.Engine that records its calls
    sglang = SGLangEngine(config_only_8b, {}, runtime=runtime)
    sglang.request_args = {"temperature": 0.5, "sampling_seed": 7}

    async def drain():
        return [chunk async for chunk in sglang.generate(request)]

    asyncio.run(drain())
    sampling = runtime.calls[0][1]
    assert sampling["temperature"] == 0.5 and sampling["sampling_seed"] == 7 and sampling["max_new_tokens"] == 4


def test_the_sampling_cost_set_is_request_features_against_greedy_and_every_key_is_one_vllm_takes():
    from compare.run.points.ablations import ABLATIONS
    from compare.run.points.points import ablation_points
    from engines.base import scoped_args

    points, question = ablation_points("sampling-cost", None)
    assert points[0].label == "baseline" and not points[0].request_args and "against greedy" in question
    assert all(p.request_args and not p.engine_args for p in points[1:])
    assert ("vllm.logprobs=20",) in [p.request_args for p in points]
    assert ABLATIONS["sampling-cost"].engines == ("vllm",)
    for point in points[1:]:  # the run also puts each through vLLM's own check (check_points) before the first runs
        typed_request_args(
            "vllm", scoped_args(point.request_args, "vllm", {"vllm"}, "--request-arg"), VLLMEngine.request_keys
        )


def test_every_key_reaches_vllms_sampling_params_read_back_without_a_run():
    pytest.importorskip("vllm")
    from engines.request_args import REQUEST_KEYS, engine_request_args

    given = {
        "temperature": "0.7",
        "top_p": "0.9",
        "top_k": "20",
        "min_p": "0.01",
        "presence_penalty": "0.1",
        "frequency_penalty": "0.2",
        "repetition_penalty": "1.05",
        "seed": "7",
        "n": "1",
        "logprobs": "2",
        "prompt_logprobs": "1",
        "stop": "END",
        "stop_token_ids": "3,4",
        "detokenize": "true",
        "beam_width": "1",
    }
    assert set(given) == set(REQUEST_KEYS)
    passed = typed_request_args("vllm", given, VLLMEngine.request_keys)
    VLLMEngine.check_request_args(passed)
    engine = VLLMEngine.__new__(VLLMEngine)  # no model, no start: only its SamplingParams side
    engine.request_args = engine_request_args(VLLMEngine, passed)  # n=1, beam_width=1: the defaults, not passed
    assert engine.effective_request_args() == {k: v for k, v in passed.items() if k not in ("n", "beam_width")}
    engine.request_args = {"beam_width": 3, "temperature": 0.5}  # beam search: read back from BeamSearchParams
    assert engine.effective_request_args() == {"beam_width": 3, "temperature": 0.5}
