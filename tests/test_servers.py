"""The server launcher's lifecycle and fault cases, with a stand-in server (tests/stand_in_server.py, a fake)."""

import asyncio
import os
import socket
import sys

import pytest

from engines.servers import COMMANDS, ServerCommand, ServerFailed, ServerProcess

STAND_IN = os.path.join(os.path.dirname(__file__), "stand_in_server.py")


def stand_in(*flags):
    return ServerCommand("stand-in", (sys.executable, STAND_IN, "--port", "{port}", *flags), "/health")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


@pytest.mark.engine
def test_starts_on_a_free_port_logs_and_tears_down_the_whole_group(tmp_path):
    pid_file = tmp_path / "child.pid"

    async def go():
        async with ServerProcess(stand_in("--child-pid-file", str(pid_file)), "m", tmp_path / "server.log") as server:
            assert server.url.startswith("http://127.0.0.1:") and server.startup_s < 30
            child = int(pid_file.read_text())
            assert alive(child)
            return server, child

    server, child = asyncio.run(go())
    assert not alive(child) and server.process.poll() is not None
    assert "stand-in server starting" in (tmp_path / "server.log").read_text()


@pytest.mark.unit
def test_a_port_already_in_use_is_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ServerFailed, match=f"^port {port} on 127.0.0.1 is already in use"):
            ServerProcess(stand_in(), "m", tmp_path / "s.log", port=port)


@pytest.mark.engine
def test_the_readiness_timeout_kills_the_server_and_quotes_its_log(tmp_path):
    server = ServerProcess(stand_in("--never-ready"), "m", tmp_path / "s.log", ready_timeout_s=1.5)
    with pytest.raises(
        ServerFailed, match=r"not ready at http://127.0.0.1:\d+/health within 1.5 s; log ends: stand-in"
    ):
        asyncio.run(server.start())
    assert server.process.poll() is not None


@pytest.mark.engine
def test_a_server_that_dies_during_start_up_is_reported_with_its_log(tmp_path):
    server = ServerProcess(stand_in("--exit-now"), "m", tmp_path / "s.log")
    with pytest.raises(ServerFailed, match=r"exited with code 3 before it was ready; log ends: .*CUDA out of memory"):
        asyncio.run(server.start())


@pytest.mark.unit
def test_a_missing_server_binary_is_one_line(tmp_path):
    command = ServerCommand("nothing", ("surely-not-a-binary-xyz", "--port", "{port}"), "/health")
    with pytest.raises(ServerFailed, match="'surely-not-a-binary-xyz' not found"):
        asyncio.run(ServerProcess(command, "m", tmp_path / "s.log").start())


@pytest.mark.unit
def test_engine_commands_fill_model_host_and_port(tmp_path):
    server = ServerProcess(COMMANDS["vllm"], "/models/tiny", tmp_path / "s.log", extra_args=("--dtype", "bfloat16"))
    assert server.argv == [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/models/tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--dtype",
        "bfloat16",
    ]
    assert ServerProcess(COMMANDS["ollama"], "x", tmp_path / "o.log").env["OLLAMA_HOST"].startswith("127.0.0.1:")


@pytest.mark.engine
@pytest.mark.parametrize("engine", ["llamacpp"])  # vLLM's server: test_http_mode_against_a_launched_vllm_server_...
def test_real_engine_servers_come_up_answer_and_go_away(engine, tiny_llama3, model_cache, tmp_path):
    import json
    import urllib.request

    pytest.importorskip({"llamacpp": "llama_cpp", "vllm": "vllm"}[engine])
    if engine == "llamacpp":
        from engines.gguf import export_gguf

        model, extra = str(export_gguf(tiny_llama3, "f16", model_cache)[0]), ("--n_threads", "1")
    else:
        model = str(tiny_llama3.path)
        extra = ("--enforce-eager", "--max-model-len", "4096", "--kv-cache-memory-bytes", str(1 << 30))

    async def go():
        async with ServerProcess(COMMANDS[engine], model, tmp_path / "server.log", extra_args=extra) as server:
            with urllib.request.urlopen(server.url + "/v1/models", timeout=10) as response:
                return server, json.loads(response.read())

    server, models = asyncio.run(go())
    assert models["data"][0]["id"] == model
    assert server.process.poll() is not None


@pytest.mark.engine
@pytest.mark.parametrize("sse", ["good", "malformed"])
def test_http_client_counts_sse_tokens_and_fails_a_malformed_stream(sse, tiny_llama3, tmp_path):
    from compare.run.runner import closed_loop
    from engines.base import Request
    from engines.http_openai import HttpCompletionsEngine

    async def go():
        async with ServerProcess(stand_in("--sse", sse), "m", tmp_path / "s.log") as server:
            engine = HttpCompletionsEngine(tiny_llama3, {"endpoint": server.url})
            await engine.start()
            try:
                return await closed_loop(engine, (Request("r", (1, 2, 3), 2, 2),), 1, timeout_s=10)
            finally:
                await engine.stop()

    (record,) = asyncio.run(go())
    if sse == "good":
        assert record.ok and record.output_tokens == 2 and record.prompt_tokens_reported == 3
        assert record.engine["token_counting"] == "token_ids" and record.engine["token_count_mismatches"] == []
    else:
        assert not record.ok and "malformed SSE line: 'this is not an SSE line'" in record.error
        assert record.output_tokens == 2


@pytest.mark.unit
def test_the_http_engine_launches_a_named_server_with_only_its_server_args(config_only_8b, tmp_path):
    """`--engine http --engine-arg server=vllm`: the launched server gets the model and `server_args`, nothing of an
    in-process engine's (that is `--mode http`, whose run against a real vLLM server is test_overhead.py's)."""
    from engines.http_openai import HttpCompletionsEngine

    engine = HttpCompletionsEngine(
        config_only_8b,
        {"server": "vllm", "log_dir": str(tmp_path), "server_args": "--enforce-eager --max-model-len 4096"},
    )
    server = engine.server_process()
    assert server.argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert server.argv[server.argv.index("--model") + 1] == str(config_only_8b.path)
    assert server.argv[-3:] == ["--enforce-eager", "--max-model-len", "4096"] and server.argv.count("--port") == 1
    assert server.log_path == tmp_path / "server-vllm.log" and server.env["VLLM_SERVER_DEV_MODE"] == "1"


class KillsServerMidStream:
    """A TEST WRAPPER around a real `http` engine: SIGKILLs its server's process group once request
    number `kill_at` has streamed its first chunk. Everything else is the real engine."""

    def __init__(self, engine, kill_at: int):
        self.engine, self.kill_at, self.started = engine, kill_at, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    async def generate(self, request):
        import signal

        self.started += 1
        kill = self.started == self.kill_at
        async for chunk in self.engine.generate(request):
            yield chunk
            if kill:
                os.killpg(self.engine.server.process.pid, signal.SIGKILL)
                kill = False


@pytest.mark.engine
def test_a_server_killed_mid_cell_fails_its_requests_on_record_and_the_run_goes_on(tiny_llama3, model_cache, tmp_path):
    pytest.importorskip("llama_cpp")
    import json

    from rich.console import Console

    from compare.run.session import EngineRun, RunOptions, run_scenario
    from engines.http_openai import HttpCompletionsEngine
    from engines.llamacpp_offline import LlamaCppEngine
    from workloads.plan import plan_scenario
    from workloads.scenario_files import apply_overrides, load_scenario

    scenario = apply_overrides(
        load_scenario("concurrent"),
        False,
        {"concurrency": [1, 2], "input_tokens": [32], "output_tokens": 48, "num_requests": 4, "warmup_requests": 0},
    )
    tokenizer = tiny_llama3.load_tokenizer()
    plans = plan_scenario(scenario, tokenizer, tiny_llama3.max_context_tokens)
    launch = LlamaCppEngine(tiny_llama3, {"n_threads": "1"}).http_server()
    http = HttpCompletionsEngine(tiny_llama3, {"log_dir": str(tmp_path)}, launch=launch)
    engine = KillsServerMidStream(http, kill_at=2)

    async def go():
        await http.start()
        try:
            variant = {"of": "llamacpp", "kind": "http", "engine_args": {"n_threads": "1"}}
            return await run_scenario(
                EngineRun("llamacpp-http", engine, variant),
                tiny_llama3,
                scenario,
                plans,
                tokenizer,
                RunOptions(out_dir=tmp_path, show_progress=False),
                Console(quiet=True),
            )
        finally:
            await http.stop()

    results = asyncio.run(go())
    doc = json.loads(results.path.read_text())
    assert doc["status"] == "complete" and [c["cell_id"] for c in doc["cells"]] == ["c1-in32", "c2-in32"]
    first, second = (cell["requests"] for cell in doc["cells"])
    assert first[0]["ok"] and first[0]["output_tokens"] >= 48  # llama_cpp.server can run one chunk over
    assert not first[1]["ok"] and 1 <= first[1]["output_tokens"] < 48  # cut mid-stream, its tokens kept
    assert all(not r["ok"] and r["error"] for r in first[1:] + second)  # every later request fails on record
    assert doc["cells"][0]["summary"]["num_failed"] == 3 and doc["cells"][1]["summary"]["num_failed"] == 4
