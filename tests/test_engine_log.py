"""Engine output goes to a file beside the results; the harness's own lines stay on the terminal (--verbose: live)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from engines.null import NullEngine
from tests.conftest import ROOT, run_cli

CHATTER = ("chatter-print", "chatter-stderr", "chatter-fd2", "chatter-logging", "chatter-warning", "chatter-child")


class FakeChattyEngine(NullEngine):
    """A FAKE engine (the null engine's tokens) that prints, at start, every way a real engine does: print, sys.stderr,
    a raw write to fd 2 (C code), a logging handler made now (vLLM configures its own at import), a warning, and a
    child process that inherits the descriptors (vLLM's EngineCore)."""

    async def start(self) -> None:
        print("chatter-print")
        print("chatter-stderr", file=sys.stderr)
        os.write(2, b"chatter-fd2\n")
        handler = logging.StreamHandler(sys.stdout)
        logger = logging.getLogger("fake.chatty")
        logger.addHandler(handler)
        logger.warning("chatter-logging")
        logger.removeHandler(handler)
        warnings.warn("chatter-warning", stacklevel=1)
        subprocess.run([sys.executable, "-c", "print('chatter-child')"], check=True)
        await super().start()


def _run(tmp_path, model_cache, config_only_model, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli(
        [
            "--engine",
            "tests.test_engine_log:FakeChattyEngine",
            "--model",
            str(config_only_model),
            "--scenario",
            "smoke",
            "--quick",
            "--out",
            str(tmp_path),
            *extra,
        ],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.engine
def test_engine_output_goes_to_the_log_and_the_harness_table_to_the_terminal(tmp_path, model_cache, config_only_model):
    result = _run(tmp_path, model_cache, config_only_model)
    terminal = result.stdout + result.stderr
    log = tmp_path / "logs" / "tests.test_engine_log_FakeChattyEngine-engine.log"
    assert f"engine log: {log}" in result.stdout.splitlines()[0]  # named before anything else
    assert "== tests.test_engine_log:FakeChattyEngine / smoke" in result.stdout and "results: " in result.stdout
    assert not [line for line in CHATTER if line in terminal]
    written = log.read_text()
    assert [line for line in CHATTER if line in written] == list(CHATTER)
    assert "cell c1-in32" not in written  # the harness's lines stay out of the engine's log


@pytest.mark.engine
def test_verbose_shows_engine_output_live_and_writes_no_log(tmp_path, model_cache, config_only_model):
    result = _run(tmp_path, model_cache, config_only_model, "--verbose")
    terminal = result.stdout + result.stderr
    assert [line for line in CHATTER if line in terminal] == list(CHATTER)
    assert "engine log:" not in terminal and not (tmp_path / "logs").exists()


@pytest.mark.engine
def test_the_log_restores_the_descriptors_and_streams_it_took(tmp_path):
    """Engine output before keep() (the inputs still being checked) lands in the file once kept, and nowhere if the
    run ends before: bad input leaves no folder."""
    code = (
        "import os, sys; from pathlib import Path; from compare.run.enginelog import EngineLog, harness_out\n"
        "stdout, stderr = sys.stdout, sys.stderr\n"
        f"with EngineLog(Path({str(tmp_path / 'kept' / 'e.log')!r})) as log:\n"
        "    print('before-keep'); log.keep()\n"
        "    os.write(1, b'inside-fd1\\n'); print('inside-print'); harness_out().write('harness-line\\n')\n"
        f"with EngineLog(Path({str(tmp_path / 'dropped' / 'e.log')!r})):\n"
        "    print('never-kept')\n"
        "assert sys.stdout is stdout and sys.stderr is stderr\n"
        "os.write(1, b'after-fd1\\n'); print('after-print')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["harness-line", "after-fd1", "after-print"]
    assert (tmp_path / "kept" / "e.log").read_text().split("\n", 1)[1].split() == [
        "before-keep",
        "inside-fd1",
        "inside-print",
    ]
    assert not (tmp_path / "dropped").exists()
