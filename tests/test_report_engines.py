"""`python -m compare.report` on a CPU run of two real engines (vLLM's CPU build and llama.cpp): the hypotheses it
can judge there, and every figure a real, non-blank PNG. Apart from test_report.py, whose `--vs` test needs the
CPU to itself (tests/conftest.py orders the modules that hold such tests last)."""

import pytest

from compare.report.command import main as report_main
from tests.test_report import ROOT, assert_real_pngs


@pytest.mark.engine
def test_the_report_on_a_cpu_run_of_two_real_engines(model_cache, tmp_path):
    pytest.importorskip("vllm")
    pytest.importorskip("llama_cpp")
    from tests.conftest import run_cli

    result = run_cli(
        [
            "--engine",
            "vllm",
            "--engine",
            "llamacpp",
            "--scenario",
            "single",
            "--scenario",
            "concurrent",
            "--quick",
            "--concurrency",
            "1,8",
            "--input-tokens",
            "128",
            "--output-tokens",
            "32",
            "--engine-arg",
            "vllm.enforce_eager=true",
            "--engine-arg",
            "vllm.max_model_len=4096",
            "--out",
            str(tmp_path / "runs"),
        ],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "#### H3: " in text and "#### H3: not testable" not in text  # llamacpp stands in for Ollama against vllm
    assert "#### H2: " in text and "llamacpp stands in for Ollama" in text
    assert "no GPU in this run (CPU)" in text
    assert "precision differs" in text  # GGUF f16 against bf16
    assert_real_pngs(tmp_path / "report", at_least=3)
