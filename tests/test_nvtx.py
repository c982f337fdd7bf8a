"""NVTX ranges per cell and per request, through a recording FAKE `nvtx` module, and `--nsys`: the command line
that would run, and the errors before it (the machines here have no working nsys)."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from compare.run.instruments import nsys
from compare.run.instruments.cellwindow import CellWindow, Instruments
from compare.run.instruments.nvtx_marks import DOMAIN, load_nvtx
from compare.run.openloop import open_loop
from compare.run.runner import closed_loop
from engines.base import Request
from tests.fakes import FakeEngine
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit


class RecordingNvtx(types.ModuleType):
    """A FAKE nvtx: records every call in order; start_range hands out increasing ids."""

    def __init__(self):
        super().__init__("nvtx")
        self.calls: list[tuple] = []
        self.next_id = 100

    def push_range(self, message=None, color=None, domain=None, category=None, payload=None):
        self.calls.append(("push", message, domain, category))

    def pop_range(self, domain=None):
        self.calls.append(("pop", domain))

    def start_range(self, message=None, color=None, domain=None, category=None, payload=None):
        self.next_id += 1
        self.calls.append(("start", message, domain, category, self.next_id))
        return self.next_id

    def end_range(self, range_id):
        self.calls.append(("end", range_id))


def requests(n: int) -> tuple[Request, ...]:
    return tuple(
        Request(request_id=f"c4-r{i}", prompt_token_ids=(1, 2, 3), max_output_tokens=4, min_output_tokens=4)
        for i in range(n)
    )


def run_marked(fake: RecordingNvtx, send) -> CellWindow:
    window = CellWindow("c4", Instruments(energy={}, nvtx=fake, nvtx_status="FAKE"))

    async def cell():
        async with window:
            await send()

    asyncio.run(cell())
    return window


def test_a_cell_range_wraps_one_start_end_range_per_request_with_its_id():
    fake = RecordingNvtx()
    engine = FakeEngine(delay_s=0.002)
    window = run_marked(fake, lambda: closed_loop(engine, requests(6), 3, 10.0))
    assert fake.calls[0] == ("push", "c4", DOMAIN, "c4") and fake.calls[-1] == ("pop", DOMAIN)
    starts = {call[4]: call[1] for call in fake.calls if call[0] == "start"}
    ends = [call[1] for call in fake.calls if call[0] == "end"]
    assert sorted(starts.values()) == [f"c4-r{i}" for i in range(6)]
    assert sorted(ends) == sorted(starts) and len(ends) == 6  # every range ended once, by its own id
    assert all(call[3] == "c4" for call in fake.calls if call[0] == "start")  # the cell is the category
    # concurrency 3: requests overlap, so a later request starts before an earlier one ends
    order = [("start", c[4]) if c[0] == "start" else ("end", c[1]) for c in fake.calls if c[0] in ("start", "end")]
    assert order.index(("start", 102)) < order.index(("end", 101))
    assert window.observed(None)["nvtx"] == {"domain": DOMAIN, "cell_range": "c4", "num_request_ranges": 6}


def test_an_open_loop_request_range_starts_when_it_is_sent_not_when_it_is_planned():
    fake = RecordingNvtx()
    engine = FakeEngine(delay_s=0.001)
    run_marked(fake, lambda: open_loop(engine, requests(3), (0, 30_000_000, 60_000_000), 0, 10.0))
    events = [c[0] for c in fake.calls]
    assert events == ["push", "start", "end", "start", "end", "start", "end", "pop"]  # 30 ms apart, 4 tokens of 1 ms


def test_requests_outside_a_cell_range_are_not_marked():
    fake = RecordingNvtx()
    run_marked(fake, lambda: asyncio.sleep(0))
    asyncio.run(closed_loop(FakeEngine(delay_s=0.001), requests(2), 1, 10.0))
    assert [c[0] for c in fake.calls] == ["push", "pop"]


def test_the_real_nvtx_module_takes_the_same_calls():
    nvtx = pytest.importorskip("nvtx")  # the `anatomy` and `nvtx` extras; without nsys attached its ranges are no-ops
    window = run_marked(nvtx, lambda: closed_loop(FakeEngine(delay_s=0.001), requests(4), 2, 10.0))
    assert window.observed(None)["nvtx"]["num_request_ranges"] == 4


def test_without_nvtx_nothing_is_marked_and_the_run_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvtx", None)  # import nvtx raises ImportError
    module, status = load_nvtx()
    assert module is None and "nvtx is not installed" in status
    window = CellWindow("c4", Instruments(energy={}, nvtx=None, nvtx_status=status))
    assert window.marks is None


def test_the_nsys_command_captures_between_cuda_profiler_start_and_stop(tmp_path):
    argv = ["--engine", "vllm", "--scenario", "smoke", "--nsys", "c2-in32"]
    command = nsys.nsys_argv("/opt/nsys/bin/nsys", argv, tmp_path / "nsys" / "run")
    assert command[:2] == ["/opt/nsys/bin/nsys", "profile"]
    assert "--capture-range=cudaProfilerApi" in command and "--trace=cuda,nvtx,osrt" in command
    assert "--trace-fork-before-exec=true" in command  # vLLM's workers and SGLang's scheduler are child processes
    assert command[command.index("--output") + 1] == str(tmp_path / "nsys" / "run")
    assert command[-len(argv) - 3 :] == [sys.executable, "-m", "compare", *argv]


def test_nsys_not_on_the_path_exits_2_naming_it(cli, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(nsys.UNDER_NSYS, raising=False)
    assert_usage_error(cli("--engine", "hf", "--scenario", "smoke", "--nsys", "c1-in32"), "--nsys needs Nsight Systems")


def test_nsys_with_an_engine_without_a_cuda_profiler_exits_2(cli):  # noqa: F811
    assert_usage_error(
        cli("--engine", "null", "--scenario", "smoke", "--nsys", "c1-in32"),
        "engine(s) null have no CUDA profiler window",
    )


def test_nsys_names_a_cell_of_the_run(cli):  # noqa: F811
    assert_usage_error(
        cli("--engine", "vllm", "--scenario", "smoke", "--nsys", "nocell"), "--nsys 'nocell': no scenario"
    )


def test_under_nsys_the_cell_runs_in_the_cuda_profiler_window(monkeypatch, tmp_path):
    from compare.cli.main import run_config
    from compare.cli.parser import build_parser

    monkeypatch.setenv(nsys.UNDER_NSYS, "1")
    argv = ["--engine", "hf", "--scenario", "smoke", "--nsys", "c1-in32", "--out", str(tmp_path)]
    config = run_config(build_parser().parse_args(argv), argv)
    assert config.profile == "c1-in32" and config.profile_kind == "cuda"


def test_the_engines_layerwise_nvtx_switches_are_engine_args():
    from engines.sglang.args import server_args_fields

    assert server_args_fields()["enable_layerwise_nvtx_marker"] == "bool"  # from the pinned 0.5.17 field list
    pytest.importorskip("vllm")
    from engines.vllm.args import vllm_fields

    assert "bool" in vllm_fields()["enable_layerwise_nvtx_tracing"]
