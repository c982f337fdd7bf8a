"""The fault table (README): each fault, and that every finished cell is still on disk in a valid file while
the run goes on or exits with a clear code. The `null` engine's fault knobs (hang_after_requests,
start_alloc_mib) are fault injection in a fake engine, named as such; the rest are real engines."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compare.results.store import load
from tests.conftest import ROOT

pytestmark = pytest.mark.engine


def start_cli(args: list[str], cache: Path, preexec=None) -> subprocess.Popen:
    """The CLI in its own session; SIGINT at its default even when pytest runs in a shell's background job."""
    env = dict(os.environ, ENGINEBENCH_CACHE=str(cache), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "compare", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: _preexec(preexec),
        start_new_session=True,
    )


def _preexec(extra) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if extra is not None:
        extra()


def read_until(proc: subprocess.Popen, marker: str, timeout_s: float = 300) -> list[str]:
    """Lines of the run's output up to the first that holds `marker`."""
    lines, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never printed; output: {lines[-20:]}")


def finish(proc: subprocess.Popen, timeout_s: float = 300) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # nothing of a failed test keeps running into the next one
        raise
    return proc.returncode, out


def only_results(folder: Path, pattern: str = "*_*.json") -> list[Path]:
    files = sorted(folder.glob(pattern))
    assert not list(folder.glob(".*.json.*")), "a temporary (half-written) file was left behind"
    return files


NULL_CELLS = [
    "--engine",
    "null",
    "--scenario",
    "concurrent",
    "--concurrency",
    "1,2,4",
    "--num-requests",
    "8",
    "--output-tokens",
    "40",
    "--engine-arg",
    "null.interval_ms=5",
]


def test_sigint_leaves_finished_cells_and_resume_completes_the_same_file(config_only_model, model_cache, tmp_path):
    common = [*NULL_CELLS, "--model", str(config_only_model)]
    proc = start_cli([*common, "--out", str(tmp_path)], model_cache)
    read_until(proc, "cell c1-")
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == 130, out
    (path,) = only_results(tmp_path)
    interrupted = load(path)
    assert interrupted["status"] == "interrupted"
    first = interrupted["cells"][0]
    assert first["complete"] and first["summary"]["num_ok"] == 8
    resumed = start_cli([*common, "--resume", str(tmp_path)], model_cache)
    code, out = finish(resumed)
    assert code == 0, out
    assert f"kept from {path}" in out
    (same,) = only_results(tmp_path)
    doc = load(same)
    assert same == path and doc["status"] == "complete"
    assert [c["cell_id"].split("-")[0] for c in doc["cells"]] == ["c1", "c2", "c4"] and all(
        c["complete"] for c in doc["cells"]
    )
    assert [r.sent_ns for r in doc["cells"][0]["requests"]] == [
        r.sent_ns for r in first["requests"]
    ]  # kept as measured
    assert doc["resumed"][0]["previous_status"] == "interrupted" and doc["resumed"][0]["kept_cells"][0].startswith(
        "c1-"
    )
    again = start_cli([*common, "--resume", str(tmp_path)], model_cache)
    code, out = finish(again)
    assert code == 0 and "skipped (--resume)" in out and len(only_results(tmp_path)) == 1


def test_a_hung_engine_is_killed_at_the_deadline_and_the_next_point_still_runs(
    config_only_model, model_cache, tmp_path
):
    # the first point's engine hangs from its 13th request on: cell c1 (3 warmups + 8) finishes, c2 hangs in its
    # warmups. Unloaded, a child runs c1 in about 5 s and all three cells in about 6 (2.7 s of it starting): the
    # 20 s deadline leaves three times that
    proc = start_cli(
        [
            *NULL_CELLS,
            "--model",
            str(config_only_model),
            "--out",
            str(tmp_path),
            "--deadline",
            "20",
            "--sweep",
            "null.hang_after_requests=12,0",
            "--timeout",
            "600",
        ],
        model_cache,
    )
    code, out = finish(proc)
    assert code == 1, out
    (folder,) = tmp_path.glob("sweep_sweep_*")
    manifest = json.loads((folder / "sweep.json").read_text())
    hung, healthy = manifest["points"]
    assert hung["status"] == "deadline" and "20 s deadline" in hung["reason"], hung
    assert healthy["status"] == "complete" and healthy["returncode"] == 0
    (hung_file,) = only_results(Path(hung["dir"]))
    doc = load(hung_file)
    assert doc["status"] == "interrupted" and doc["cells"][0]["complete"]  # SIGTERM from the deadline: cells written
    assert Path(hung["log"]).read_text().strip()


def test_disk_full_on_write_leaves_the_last_complete_file_and_no_half_file(config_only_model, model_cache, tmp_path):
    def small_files():  # every write past 30 KiB fails with EFBIG, as a full disk fails with ENOSPC (the file: ~5 KB
        # and ~15 KB a cell, so the first cell's write fits and the second's does not)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30 << 10, 30 << 10))

    proc = start_cli([*NULL_CELLS, "--model", str(config_only_model), "--out", str(tmp_path)], model_cache, small_files)
    code, out = finish(proc)
    assert code == 1 and "File too large" in out, out
    (path,) = only_results(tmp_path)
    doc = load(path)  # valid JSON: the last complete write
    assert doc["cells"] and all(c["complete"] for c in doc["cells"]) and len(doc["cells"]) < 3


def test_out_of_memory_at_start_fails_that_point_and_the_next_point_runs(config_only_model, model_cache, tmp_path):
    def small_memory():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    proc = start_cli(
        [
            *NULL_CELLS,
            "--model",
            str(config_only_model),
            "--out",
            str(tmp_path),
            "--concurrency",
            "1",
            "--sweep",
            "null.start_alloc_mib=16384,0",
        ],
        model_cache,
        small_memory,
    )
    code, out = finish(proc)
    assert code == 1, out
    (folder,) = tmp_path.glob("sweep_sweep_*")
    oom, healthy = json.loads((folder / "sweep.json").read_text())["points"]
    assert oom["status"] == "failed" and "MemoryError" in oom["reason"], oom
    assert healthy["status"] == "complete" and load(Path(healthy["files"][0]))["status"] == "complete"


def test_a_port_in_use_is_one_line_and_exit_2(model_cache, tmp_path):
    pytest.importorskip("llama_cpp")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_cli(
            ["--engine", "llamacpp", "--mode", "http", "--engine-arg", f"http.port={port}", "--out", str(tmp_path)],
            model_cache,
        )
        code, out = finish(proc)
    assert code == 2 and f"port {port} on 127.0.0.1 is already in use" in out, out


def test_a_server_killed_mid_cell_fails_its_requests_and_exits_1_with_the_cells_on_disk(model_cache, tmp_path):
    pytest.importorskip("llama_cpp")
    psutil = pytest.importorskip("psutil")
    proc = start_cli(
        [
            "--engine",
            "llamacpp",
            "--mode",
            "http",
            "--scenario",
            "concurrent",
            "--concurrency",
            "1,2",
            "--num-requests",
            "6",
            "--output-tokens",
            "64",
            "--out",
            str(tmp_path),
        ],
        model_cache,
    )
    read_until(proc, "cell c1-")
    (server,) = [
        p for p in psutil.Process(proc.pid).children(recursive=True) if "llama_cpp.server" in " ".join(p.cmdline())
    ]
    server.kill()
    code, out = finish(proc)
    assert code == 1 and "request(s) of 'llamacpp-http' on 'concurrent' failed" in out, out
    (path,) = only_results(tmp_path, "llamacpp-http_*.json")
    doc = load(path)
    first, second = doc["cells"]
    assert first["summary"]["num_ok"] == 6 and second["summary"]["num_ok"] < 6
    assert all(r.error for r in second["requests"][-1:])


def test_sigkill_to_vllms_engine_core_fails_the_run_with_its_cells_on_disk(model_cache, tmp_path):
    pytest.importorskip("vllm")
    psutil = pytest.importorskip("psutil")
    # c2 then c1, no warmups, 200 tokens: the second cell runs four requests one after another, about 10 s, so the
    # kill lands in it even on a loaded machine (at 64 tokens it lasted about a second and a busy CI could miss it)
    proc = start_cli(
        [
            "--engine",
            "vllm",
            "--scenario",
            "concurrent",
            "--concurrency",
            "2,1",
            "--num-requests",
            "4",
            "--output-tokens",
            "200",
            "--warmups",
            "0",
            "--engine-arg",
            "enforce_eager=true",
            "--engine-arg",
            "max_model_len=4096",
            "--engine-arg",
            "cpu_threads_bind=nobind",
            "--timeout",
            "60",
            "--out",
            str(tmp_path),
            "--isolate",
            "--deadline",
            "240",
        ],
        model_cache,
    )
    read_until(proc, "cell c2-", timeout_s=600)
    cores = [
        p for p in psutil.Process(proc.pid).children(recursive=True) if "EngineCore" in p.name() + " ".join(p.cmdline())
    ]
    assert cores, "no EngineCore process found"
    for core in cores:
        core.kill()
    # A cache reset sent as EngineCore died was never answered; the adapter now fails it once vLLM notices the death,
    # and the isolated child's deadline bounds anything else that might hang.
    code, out = finish(proc, timeout_s=400)
    assert code == 1 and ("point baseline: failed" in out or "point baseline: deadline" in out), out
    (path,) = only_results(tmp_path, "vllm_*.json")
    doc = load(path)
    assert doc["cells"][0]["complete"] and doc["cells"][0]["summary"]["num_ok"] == 4
    assert doc["status"] in ("failed", "complete") and len(doc["cells"]) <= 2


def _fake_sse_server_process(interval_ms: float) -> tuple[subprocess.Popen, str]:
    """The FAKE SSE server (tests/fake_sse_server.py) in its own process: a slow stand-in engine."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_sse_server.py"), "--interval-ms", str(interval_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, server.stdout.readline().split(" on ", 1)[1].strip()


def test_a_client_worker_killed_mid_cell_fails_only_its_share_on_record_and_the_run_goes_on(model_cache, tmp_path):
    psutil = pytest.importorskip("psutil")
    server, url = _fake_sse_server_process(interval_ms=20.0)  # 48 tokens: ~1 s per request, 4 waves per cell
    try:
        proc = start_cli(
            [
                "--engine",
                "http",
                "--engine-arg",
                f"endpoint={url}",
                "--client-procs",
                "2",
                "--scenario",
                "concurrent",
                "--concurrency",
                "8,4",
                "--num-requests",
                "32",
                "--output-tokens",
                "48",
                "--warmups",
                "0",
                "--out",
                str(tmp_path),
            ],
            model_cache,
        )
        read_until(proc, "clients: 2 worker(s) as processes")
        time.sleep(1.5)  # mid-cell: every worker has requests in flight
        workers = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]
        workers[1].kill()
        code, out = finish(proc, timeout_s=300)
    finally:
        server.terminate()
    assert code == 1 and "request(s) of 'http' on 'concurrent' failed" in out, out  # exit 1, not a lost cell
    (path,) = only_results(tmp_path, "http_*.json")
    doc = load(path)
    assert doc["status"] == "complete" and [c["cell_id"] for c in doc["cells"]] == ["c8-in512", "c4-in512"]
    first, second = doc["cells"]
    failed = [r for r in first["requests"] if not r.ok]
    assert len(failed) == 16 and first["summary"]["num_ok"] == 16  # the survivor's records are kept
    assert all(f"(pid {workers[1].pid}) killed by SIGKILL mid-cell" in r.error for r in failed)
    assert [w.get("died") for w in first["client_workers"]] == [None, "killed by SIGKILL"]
    assert second["summary"]["num_ok"] == 32 and len(second["client_workers"]) == 1  # the next cell, on the survivor
