"""Every bad input gets one line on stderr and exit code 2; nothing measured is lost."""

import json

import pytest

import engines
from compare.cli.main import main
from engines import EngineEntry

pytestmark = pytest.mark.unit


@pytest.fixture
def cli(monkeypatch, model_cache, config_only_model, tmp_path, capsys):
    """`python -m compare` in this process, on a config-only model (no torch, no weights) unless --model is given."""
    monkeypatch.setenv("ENGINEBENCH_CACHE", str(model_cache))
    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        model = [] if "--model" in args else ["--model", str(config_only_model)]
        code = main([*args, *model, "--no-progress"])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def assert_usage_error(result, message):
    code, _, err = result
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0]


def test_unknown_engine(cli):
    assert_usage_error(
        cli("--engine", "vlm"),
        "unknown engine 'vlm'; valid: hf, http, llamacpp, null, ollama, sglang, vllm, vllm-batch",
    )


def test_unknown_scenario(cli):
    assert_usage_error(
        cli("--engine", "null", "--scenario", "nope"), "unknown scenario 'nope'; valid: batch-shapes, concurrent"
    )


def test_missing_engine_package(cli, monkeypatch):
    entry = EngineEntry(
        "engines.null:NullEngine", ("surely_not_installed_pkg",), "pip install 'enginebench[vllm]'", "test"
    )
    monkeypatch.setitem(engines.REGISTRY, "needs-pkg", entry)
    assert_usage_error(cli("--engine", "needs-pkg"), "pip install 'enginebench[vllm]'")


def test_prompt_longer_than_the_models_context(cli):
    result = cli("--engine", "null", "--scenario", "smoke", "--input-tokens", "9000")
    assert_usage_error(result, "prompt 9000 + output 16 tokens exceed the model's context (8192 tokens)")


def test_model_path_that_does_not_exist(cli):
    assert_usage_error(
        cli("--engine", "null", "--model", "/no/such/model"), "model path '/no/such/model' does not exist"
    )


def test_malformed_scenario_json(cli, tmp_path):
    (tmp_path / "bad.json").write_text('{"name": "bad", ')
    assert_usage_error(cli("--engine", "null", "--scenario", str(tmp_path / "bad.json")), "malformed JSON")


def test_malformed_engine_arg(cli):
    assert_usage_error(cli("--engine", "null", "--engine-arg", "interval_ms"), "must look like key=value")
    assert_usage_error(cli("--engine", "null", "--engine-arg", "interval=1"), "has no engine arg 'interval'")


def test_engine_args_scoped_to_one_engine_do_not_reach_the_others(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(
        engines.REGISTRY, "null2", EngineEntry("engines.null:NullEngine", (), "", "a second null, for this test")
    )
    code, _, err = cli(
        "--engine",
        "null",
        "--engine",
        "null2",
        "--engine-arg",
        "null2.interval_ms=3",
        "--engine-arg",
        "null.interval_ms=1",
        "--out",
        str(tmp_path / "out"),
        "--no-isolate",
    )
    assert code == 0, err
    (first,) = (tmp_path / "out").glob("null_smoke_*.json")
    (second,) = (tmp_path / "out").glob("null2_smoke_*.json")
    assert json.loads(first.read_text())["engine"]["engine_args"]["interval_ms"] == 1.0
    assert json.loads(second.read_text())["engine"]["engine_args"]["interval_ms"] == 3.0


def test_an_engine_prefix_naming_an_engine_not_in_the_run_is_refused(cli):
    assert_usage_error(
        cli("--engine", "null", "--engine-arg", "vllm.block_size=16"),
        "engine 'vllm' is not in this run (its engines: null); fix the prefix or add --engine vllm",
    )
    assert_usage_error(
        cli("--engine", "null", "--num-requests", "5", "--sweep", "vlm.block_size=16,32"),
        "has no engine arg 'vlm.block_size'",
    )
    assert_usage_error(
        cli("--engine", "null", "--num-requests", "5", "--sweep", "hf.threads=1,2"), "engine 'hf' is not in this run"
    )


def test_a_profile_cell_that_no_scenario_has_is_refused_naming_the_cells(cli):
    assert_usage_error(
        cli("--engine", "null", "--scenario", "smoke", "--profile", "nocell"),
        "--profile 'nocell': no scenario of this run has that cell; its cells: c1-in32, c2-in32",
    )


def test_a_negative_deadline_is_refused(cli):
    assert_usage_error(
        cli("--engine", "null", "--deadline", "-5"), "--deadline -5: give seconds > 0, or 0 for no deadline"
    )


def test_a_sweep_key_of_any_engine_is_checked_before_the_first_point(cli, tmp_path):
    assert_usage_error(
        cli("--engine", "null", "--num-requests", "5", "--sweep", "bogus=1,2", "--out", str(tmp_path / "out")),
        "engine 'null' has no engine arg 'bogus'",
    )
    assert not (tmp_path / "out").exists()  # no point started


def test_a_failing_engine_keeps_the_results_already_measured(cli, tmp_path):
    code, out, err = cli(
        "--engine", "null", "--engine", "tests.fakes:BrokenStartEngine", "--out", str(tmp_path / "out")
    )
    assert code == 1
    assert "engine 'tests.fakes:BrokenStartEngine' failed to start: RuntimeError: cannot load weights" in err
    (path,) = (tmp_path / "out").glob("null_smoke_*.json")
    doc = json.loads(path.read_text())
    assert doc["status"] == "complete" and len(doc["cells"]) == 2


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "examples:" in out and "--engine-arg" in out and "Exit codes" in out


def test_engines_are_validated_before_anything_is_measured(cli, tmp_path):
    result = cli("--engine", "null", "--engine", "tests.fakes:NeedsWeightsEngine", "--out", str(tmp_path / "out"))
    assert_usage_error(result, "has config and tokenizer only; --engine tests.fakes:NeedsWeightsEngine needs weights")
    assert not (tmp_path / "out").exists()


def test_an_engine_outside_the_contract_is_refused_by_name(cli, tmp_path):
    result = cli("--engine", "tests.fakes:NotAnEngine", "--out", str(tmp_path / "out"))
    assert_usage_error(result, "implements neither StreamingEngine nor BatchEngine")
