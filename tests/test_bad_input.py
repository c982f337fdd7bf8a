"""Every bad input known, in one table: each exits 2 with one `error:` line naming the fix, before any point runs,
any results folder is made, or any model is built (the model cache holds no model)."""

import pytest

from compare.cli.main import main

pytestmark = pytest.mark.unit

BAD_INPUTS = [  # (argv, a fragment of the one error line)
    (["--engine", "vlm"], "unknown engine 'vlm'"),
    (["--engine", "tests.fakes:NotAnEngine"], "implements neither StreamingEngine nor BatchEngine"),
    (["--scenario", "nope"], "unknown scenario 'nope'"),
    (["--scenario", "{bad}.json"], "scenario"),
    (["--find-max-rate", "3", "--request-rate", "1,2"], "--find-max-rate needs --slo"),
    (["--deadline", "-1"], "--deadline -1"),
    (["--resume", "no-such-folder"], "--resume no-such-folder: no such folder"),
    (["--engine-arg", "interval_mss=1"], "has no engine arg 'interval_mss'"),
    (["--engine-arg", "interval_ms=fast"], "interval_ms='fast'"),
    (["--engine-arg", "vllm.max_model_len=64"], "vllm"),
    (["--engine-arg", "novalue"], "must look like key=value"),
    (["--request-arg", "temprature=0.5"], "temprature"),
    (["--sweep", "interval_ms"], "--sweep"),
    (["--profile", "c9-in9"], "c9-in9"),
    (["--host-profile", "c9-in9"], "c9-in9"),
    (["--client-procs", "4"], "--client-procs"),
    (["--start-together"], "--start-together needs two engines or more"),
    (["--model", "pypi:nope"], "unknown packaged model 'nope'"),
    (["--model", "synthetic:nope"], "nope"),
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--input-tokens", "100000"], "100000"),
    (["--chat"], "--chat needs a model with a chat template"),
    (["--engine", "hf", "--scenario", "structured", "--structured-kind", "regex"], "takes no regex constraints"),
    (["--engine", "llamacpp", "--scenario", "multi-lora"], "serves no LoRA adapters"),
    (["--engine", "hf", "--request-arg", "n=2"], "does not take request arg 'n'"),
    (["--concurrency", "two"], "argument --concurrency"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--trace", "no-such-trace.jsonl"], "no-such-trace.jsonl"),
    (["--slo", "preset=nope"], "nope"),
    (["--ablation", "nope"], "nope"),
    (["--engine", "hf", "--mode", "both", "--model", "synthetic:tiny-llama3"], "has no HTTP server mode"),
    # with a synthetic model, which resolving would build into the cache: every check comes before that
    (["--engine-arg", "interval_mss=1", "--model", "synthetic:tiny-llama3"], "has no engine arg 'interval_mss'"),
    (["--input-tokens", "9000", "--model", "synthetic:tiny-llama3"], "exceed the model's context (8192 tokens)"),
    (
        [
            "--input-tokens",
            "200",
            "--model",
            "synthetic:tiny-llama3",
            "--engine",
            "vllm",
            "--engine-arg",
            "max_model_len=128",
        ],
        "exceed the context of engine 'vllm' (128 tokens)",
    ),
    (["--model", "ollama:llama3.1:8b"], "needs --tokenizer"),
    (["--tokenizer", "synthetic:nope"], "unknown synthetic preset 'nope'"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS, ids=[" ".join(argv)[:40] for argv, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_before_anything_starts(
    argv, fragment, config_only_model, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "{bad}.json").write_text("{not json")
    monkeypatch.setenv("ENGINEBENCH_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    engine = [] if "--engine" in argv else ["--engine", "null"]
    model = [] if "--model" in argv else ["--model", str(config_only_model)]
    try:
        code = main([*engine, *argv, *model, "--out", str(tmp_path / "out"), "--no-progress"])
    except SystemExit as exc:  # a flag argparse refuses
        code = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    assert fragment in lines[0], lines[0]
    built = [p.name for p in cache.iterdir() if p.name != "engine-args"]  # vLLM's field list, cached to check args
    assert not (tmp_path / "out").exists() and not built, "something ran or was built before the check"
    assert "==" not in out  # no engine was started, no scenario began
