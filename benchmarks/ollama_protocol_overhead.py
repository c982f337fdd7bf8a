"""Ollama protocol overhead on this machine: the `ollama` adapter through the Ollama-protocol TEST
PEER (tests/ollama_peer.py: HTTP + NDJSON, tokens from llama.cpp; not Ollama) minus the `llamacpp`
engine in-process, on the same requests and the same GGUF. What remains is HTTP, JSON and the
client's parsing per token.

    .venv/bin/python benchmarks/ollama_protocol_overhead.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from compare.analysis.metrics import summarize
from compare.run.runner import closed_loop
from engines.llamacpp_offline import LlamaCppEngine
from engines.ollama_client import OllamaEngine
from tests.ollama_peer import OllamaTestPeer
from workloads.models import DEFAULT_MODEL, resolve_model
from workloads.plan import plan_scenario
from workloads.scenario_files import apply_overrides, load_scenario


async def measure(engine, requests):
    await engine.start()
    try:
        await closed_loop(engine, requests[:1], 1, 120)  # warmup
        return summarize(await closed_loop(engine, requests, 1, 120))
    finally:
        await engine.stop()


async def main() -> None:
    model = resolve_model(DEFAULT_MODEL)
    scenario = apply_overrides(
        load_scenario("single"), False, {"input_tokens": (128,), "repetitions": 10, "output_tokens": 64}
    )
    requests = plan_scenario(scenario, model.load_tokenizer(), model.max_context_tokens)[0].requests
    direct = await measure(LlamaCppEngine(model, {}), requests)
    with tempfile.TemporaryDirectory() as blobs, OllamaTestPeer(Path(blobs)) as peer:
        via_peer = await measure(OllamaEngine(model, {"host": peer.host}), requests)
    for name, key in (("TTFT", "ttft_ms"), ("ITL", "itl_ms")):
        a, b = direct[key], via_peer[key]
        print(
            f"{name}: llamacpp in-process p50 {a['p50']:.3f} ms, ollama client via test peer p50 {b['p50']:.3f} ms, "
            f"delta {b['p50'] - a['p50']:+.3f} ms (p99 delta {b['p99'] - a['p99']:+.3f} ms)"
        )
    print(f"output tok/s: in-process {direct['output_tok_per_s']:.1f}, via peer {via_peer['output_tok_per_s']:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
