"""Beam search on vLLM in-process (request arg beam_width=K): vLLM's own loop, stamped step by step.

vLLM's beam search is a frontend loop (entrypoints/generate/beam_search/online.py; `EngineClient.beam_search` in
older versions) and yields once, at the end. Each of its steps sends every live beam (up to K) as a one-token
request with 2K logprobs, waits for all of them, and keeps the best K candidates; a step extends every beam by one
token. The harness hands the loop an engine client that passes every call through and notices where a step ends
(a new one-token request while none is in flight), so each step reaches the recorder as a 1-token chunk when the
next one starts, the last with the search's result. TTFT is the first step's end, ITL the time of a step.
The tokens counted are the steps; the best beam returned may be shorter where it ended at EOS.
"""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace
from typing import Any, AsyncIterator, Callable

from engines.base import Chunk


class StepStamper:
    """The engine, for vLLM's beam-search loop: every attribute passes through; `generate` counts one-token requests
    in flight, and a call that finds none in flight after some have finished begins a new step (`on_step` first)."""

    def __init__(self, engine, on_step: Callable[[], None]):
        self._engine, self._on_step = engine, on_step
        self.num_in_flight, self.num_finished, self.num_requests = 0, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        if self.num_in_flight == 0 and self.num_finished:
            self.num_finished = 0
            self._on_step()
        self.num_in_flight += 1
        self.num_requests += 1
        return self._counted(self._engine.generate(*args, **kwargs))

    async def _counted(self, stream):
        try:
            async for output in stream:
                yield output
        finally:
            self.num_in_flight -= 1
            self.num_finished += 1


def beam_search_loop(engine, client) -> tuple[Callable, Callable[[list[int]], Any]]:
    """(vLLM's beam search bound to `client`, how it takes a prompt of token ids), for this vLLM version."""
    try:
        from vllm.entrypoints.generate.beam_search.online import BeamSearchOnlineMixin
        from vllm.inputs import tokens_input
    except ImportError:  # older vLLM: a method of the engine client itself
        from vllm.engine.protocol import EngineClient
        from vllm.inputs import TokensPrompt

        return functools.partial(EngineClient.beam_search, client), lambda ids: TokensPrompt(prompt_token_ids=ids)
    holder = SimpleNamespace(renderer=engine.renderer, engine_client=client)
    return functools.partial(BeamSearchOnlineMixin.beam_search, holder), tokens_input


def beam_search_params(request, request_args: dict[str, Any]):
    """BeamSearchParams for one request: the request's budget and EOS rule, the run's width and temperature."""
    from vllm.sampling_params import BeamSearchParams

    extra = {k: v for k, v in request_args.items() if k != "beam_width"}  # temperature (checked: nothing else)
    return BeamSearchParams(
        beam_width=request_args["beam_width"],
        max_tokens=request.max_output_tokens,
        ignore_eos=request.ignore_eos,
        **{"temperature": request.temperature, **extra},
    )


async def beam_search_chunks(engine, request, request_id: str, request_args: dict[str, Any]) -> AsyncIterator[Chunk]:
    """One 1-token chunk per step as the step ends; the last one carries the best beam's ids and finish reason."""
    params = beam_search_params(request, request_args)
    prompt_ids = list(request.prompt_token_ids)
    steps: asyncio.Queue = asyncio.Queue()
    client = StepStamper(engine, lambda: steps.put_nowait("step"))
    search, as_prompt = beam_search_loop(engine, client)

    async def run() -> None:
        result = None
        try:
            async for output in search(as_prompt(prompt_ids), request_id, params):
                result = output
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            steps.put_nowait(exc)
            return
        steps.put_nowait(("done", result))

    task = asyncio.ensure_future(run())
    try:
        while True:
            item = await steps.get()
            if isinstance(item, BaseException):
                raise item
            if item == "step":
                yield Chunk(1)
                continue
            best = item[1].outputs[0] if item[1] is not None and item[1].outputs else None
            yield Chunk(
                1 if client.num_requests else 0,
                token_ids=list(best.token_ids) if best is not None else None,
                finish_reason=best.finish_reason if best is not None else "error",
                num_prompt_tokens=len(prompt_ids),
            )
            return
    finally:
        if not task.done():
            task.cancel()
