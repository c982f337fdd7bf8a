"""The CLI as a user runs it: real processes (marker engine), so no in-process state can hide a fault."""

import subprocess
import sys

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.engine


def test_exit_code_2_from_a_real_process(tmp_path):
    result = run_cli(["--engine", "nope"], tmp_path, tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: unknown engine 'nope'; valid: hf, http, llamacpp, null, ollama, sglang, vllm, vllm-batch "
        "(or package.module:Class)"
    )


def test_registry_imports_no_engine_package_at_import_time():
    code = (
        "import sys, engines, compare.cli.main, compare.report.command; "
        "print(any(m in sys.modules for m in ('torch', 'transformers', 'vllm', 'sglang', 'llama_cpp', 'ollama')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
