"""Multi-LoRA on vLLM for real (the CPU build runs LoRA through its Punica CPU wrapper): synthetic adapters for
tiny-llama3 change the output, the same adapter twice gives the same ids, and a multi-lora cell reports per adapter.
"""

import asyncio
import json

import pytest

pytest.importorskip("vllm")

from compare.results.store import _jsonable  # noqa: E402
from compare.run.runner import CellRun, run_cell  # noqa: E402
from compare.run.session import cell_document  # noqa: E402
from engines.base import Request  # noqa: E402
from engines.vllm_offline import VLLMEngine  # noqa: E402
from tests.test_vllm_engine import FAST_ARGS  # noqa: E402
from workloads.lora import resolve_adapters  # noqa: E402
from workloads.plan import plan_scenario  # noqa: E402
from workloads.scenario_files import apply_overrides, load_scenario  # noqa: E402

pytestmark = pytest.mark.engine
PROMPT = tuple(range(1000, 1032))


@pytest.fixture(scope="module")
def lora_run(tiny_llama3, tmp_path_factory):
    tokenizer = tiny_llama3.load_tokenizer()
    scenario = apply_overrides(
        load_scenario("multi-lora"),
        False,
        {"lora_adapters": 4, "num_requests": 8, "output_tokens": 8, "concurrency": (2,), "warmup_requests": 1},
    )
    adapters = resolve_adapters(4, scenario.lora_rank, tiny_llama3.path, tmp_path_factory.mktemp("lora-cache"))
    (plan,) = plan_scenario(scenario, tokenizer, 4096, adapters=adapters)

    async def generate(engine, label, adapter):
        request = Request(label, PROMPT, 16, 16, lora_name=adapter and adapter.name, lora_path=adapter and adapter.path)
        return [i for chunk in [c async for c in engine.generate(request)] for i in chunk.token_ids or ()]

    async def go():
        engine = VLLMEngine(tiny_llama3, {**FAST_ARGS, "step_telemetry": "true"})
        engine.use_lora(adapters)
        await engine.start()
        try:
            outputs = {
                label: await generate(engine, label, adapter)
                for label, adapter in (
                    ("base", None),
                    ("lora3", adapters[3]),
                    ("lora3-again", adapters[3]),
                    ("lora1", adapters[1]),
                )
            }
            cell = CellRun(plan)
            await run_cell(engine, cell, 120)
            document = json.loads(json.dumps(cell_document(scenario, cell, {}, {}), default=_jsonable))
            return outputs, engine.describe(), document, engine.telemetry_rows
        finally:
            await engine.stop()

    return asyncio.run(go())


def test_an_adapter_really_runs_and_gives_the_same_ids_twice(lora_run):
    outputs, description, *_ = lora_run
    assert len(outputs["base"]) == 16 and outputs["lora3"] != outputs["base"] and outputs["lora1"] != outputs["lora3"]
    assert outputs["lora3-again"] == outputs["lora3"]  # temperature 0
    assert description.engine_args["enable_lora"] is True and description.engine_args["max_lora_rank"] == 16


def test_a_multi_lora_cell_reports_every_adapter_it_drew(lora_run):
    cell = lora_run[2]
    assert cell["summary"]["num_ok"] == 8
    drawn = cell["config"]["traffic"]["lora"]["requests_per_adapter"]
    lora = cell["traffic"]["by_adapter"]
    assert lora["num_adapters_used"] == sum(1 for n in drawn if n)
    assert sorted(row["requests"] for row in lora["adapters"].values()) == sorted(n for n in drawn if n)
    assert lora["first_use_ttft_ms_p50"] > 0 and all(r["tags"]["adapter"] in range(4) for r in cell["requests"])
    running = [row["running_adapters"] for row in lora_run[3] if "running_adapters" in row]
    assert running and 1 <= max(running) <= 2  # distinct adapters among the running requests per step (c=2)


def test_http_mode_launches_vllms_server_with_the_adapters_and_names_them_per_request(model_cache, tmp_path):
    """--mode http: `vllm serve --lora-modules lora0=... lora1=...`, each request's `model` the adapter's name (an
    unknown name would be a 404); every request comes back whole."""
    from tests.conftest import ROOT, run_cli

    args = [
        "--engine",
        "vllm",
        "--mode",
        "http",
        "--scenario",
        "multi-lora",
        "--lora-adapters",
        "2",
        "--concurrency",
        "2",
        "--num-requests",
        "6",
        "--output-tokens",
        "4",
        "--warmups",
        "0",
        "--engine-arg",
        "vllm.enforce_eager=true",
        "--engine-arg",
        "vllm.max_model_len=4096",
        "--out",
        str(tmp_path),
    ]
    result = run_cli(args, model_cache, ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = tmp_path.glob("vllm-http_multi-lora_*.json")
    doc = json.loads(path.read_text())
    launched = doc["engine"]["engine_args"]["launched"]
    modules = launched[launched.index("--lora-modules") + 1 :][:2]
    assert "--enable-lora" in launched and [m.split("=")[0] for m in modules] == ["lora0", "lora1"]
    (cell,) = doc["cells"]
    assert all(r["ok"] and r["output_tokens"] == 4 for r in cell["requests"])
    assert {r["tags"]["adapter"] for r in cell["requests"]} == {0, 1}
