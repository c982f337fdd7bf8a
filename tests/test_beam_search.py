"""Beam search (request arg beam_width=K): vLLM's own frontend loop, stamped step by step (engines/vllm/beam.py).

FakeStepEngine is a FAKE engine client (named so): every one-token request takes a known time, so the per-step
stamps have a known answer. vLLM's real loop runs over it (vLLM is installed here); the real engine runs it in
test_vllm_engine.py."""

import asyncio
from time import perf_counter_ns
from types import SimpleNamespace

import pytest

from compare.results.recorder import StreamRecorder
from engines.base import Request
from engines.vllm.beam import beam_search_chunks
from tests.test_cli import assert_usage_error, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.unit
STEP_S = 0.02


class FakeStepEngine:
    """A FAKE engine client: each one-token request sleeps STEP_S, then offers 2K candidates (token t, logprob
    -t/10)."""

    renderer = SimpleNamespace(
        get_tokenizer=lambda: SimpleNamespace(eos_token_id=0, decode=lambda ids, **_: "x" * len(ids))
    )
    input_processor = SimpleNamespace(resolve_watermarking=lambda params: None)

    def __init__(self):
        self.request_ids: list[str] = []

    async def generate(self, prompt, params, request_id, **_):
        self.request_ids.append(request_id)
        await asyncio.sleep(STEP_S)
        candidates = {token: SimpleNamespace(logprob=-token / 10) for token in range(1, params.logprobs + 1)}
        yield SimpleNamespace(outputs=[SimpleNamespace(finish_reason="length", logprobs=[candidates])])


def searched(width: int, tokens: int):
    engine, request = FakeStepEngine(), Request("r0", (7, 8, 9), tokens, 0)

    async def go():
        recorder, chunks = StreamRecorder(request, perf_counter_ns()), []
        async for chunk in beam_search_chunks(engine, request, "r0#0", {"beam_width": width}):
            recorder.on_chunk(chunk)
            chunks.append(chunk)
        return recorder.finish(None, None), chunks

    return engine, *asyncio.run(go())


def test_each_step_of_the_search_is_one_token_stamped_when_the_step_ends():
    """Known answer: 5 steps of STEP_S each; the first step's end is TTFT, every gap one step, the search sending
    1 beam then 3 per step (1 + 3 x 4 one-token requests)."""
    engine, record, chunks = searched(width=3, tokens=5)
    assert record.ok and record.output_tokens == 5 and record.chunk_tokens == [1] * 5
    assert record.ttft_ms >= STEP_S * 1e3
    gaps_ms = record.itl_ns() / 1e6
    assert gaps_ms.size == 4 and gaps_ms.min() >= STEP_S * 1e3  # stamped as each step ends, not all at the end
    assert len(engine.request_ids) == 1 + 3 * 4
    assert record.finish_reason == "length" and record.prompt_tokens_reported == 3
    assert chunks[-1].token_ids == [1] * 5  # the best beam, on the last chunk: the top candidate at every step


def test_beam_width_is_refused_where_no_stream_is_stamped_and_beside_sampling_keys(cli):  # noqa: F811
    assert_usage_error(
        cli("--engine", "null", "--request-arg", "beam_width=4"), "engine 'null' does not take request arg 'beam_width'"
    )
    assert_usage_error(
        cli("--engine", "vllm", "--request-arg", "beam_width=4", "--request-arg", "top_p=0.9"),
        "beam search (beam_width) takes temperature only; drop top_p",
    )
    assert_usage_error(cli("--engine", "vllm", "--request-arg", "beam_width=0"), "beam_width counts sequences")


def test_beam_width_1_is_greedy_and_not_passed():
    from compare.run.config import request_args_for

    assert request_args_for("vllm", ("beam_width=1",)) == {}
    assert request_args_for("vllm", ("beam_width=4", "temperature=0.5")) == {"beam_width": 4, "temperature": 0.5}
