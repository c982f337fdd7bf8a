"""The `null` engine: no model, tokens on a fixed schedule. A fake by design, and named so.

It is the harness's noise floor (interval 0: how fast the runner can ingest tokens) and a
known-answer engine for tests: with `capacity` slots, a request that holds a slot gets its first
token `prefill_ms + interval_ms` after it starts and then one chunk every `interval_ms`.
Deadlines are absolute, so sleep jitter never accumulates.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from typing import AsyncIterator

from engines.base import (
    Capabilities,
    Chunk,
    EngineDescription,
    ModelSource,
    Request,
    StreamingEngine,
    resolve_engine_args,
)
from engines.constraints import KINDS
from engines.null_steps import FakeStepLoop
from engines.request_args import REQUEST_KEYS

DEFAULT_ARGS = {
    "interval_ms": 10.0,  # between chunks of one request
    "prefill_ms": 0.0,  # added before the first chunk
    "prefill_jitter_ms": 0.0,  # and a uniform draw in [0, this) per request, seeded: a known variance (J^2 / 12)
    "capacity": 0,  # requests served at once; 0 = unlimited
    "tokens_per_chunk": 1,
    "think_tokens": 0,  # a reasoning block of this many tokens, then the request's end-of-reasoning id, then the answer
    # structured output: a grammar compile before the first token of a constraint new to the engine, and a mask per
    # token
    "compile_ms": 0.0,
    "mask_ms": 0.0,  # added to every interval of a constrained request
    # multi-LoRA: loading an adapter not in a slot costs this before the first token; slots held LRU (0: unlimited)
    "lora_load_ms": 0.0,
    "lora_slots": 0,
    # speculative decoding, faked: after the first token each step drafts spec_tokens and accepts the next of
    # spec_accepted (cycled), giving accepted + 1 tokens; its counts come back as the engine's (record.engine)
    "spec_tokens": 0,
    "spec_accepted": "",
    "gc_collect_every": 0,  # every N-th chunk (of any request) calls gc.collect(): a collector pause, for the GC tests
    "change_token_at": -1,  # output ids are 0s; >= 0: the token at this position is 1 (an output that diverges there)
    # batched steps, faked (engines/null_steps.py): > 0 serves all requests in steps of alpha + beta x tokens + noise
    "step_alpha_ms": 0.0,
    "step_beta_ms": 0.0,
    "step_noise_ms": 0.0,
    "step_chunk_tokens": 0,  # a prefill chunk's tokens per request (0: the whole prompt in one step)
    # a warm-up, faked: the first N requests to start run slow_factor x slower (the steady-window tests)
    "slow_first_requests": 0,
    "slow_factor": 3.0,
    # fault injection for the fault-table tests (tests/test_faults.py); 0: off
    "hang_after_requests": 0,  # requests after the first N never produce a token (a hung engine)
    "start_alloc_mib": 0,  # allocate and touch this much memory at start (out of memory at start)
}


class NullEngine(StreamingEngine):
    # a fake: it takes every request arg, uses none, and returns a logprob per token where logprobs are asked for
    request_keys = {key: key for key in REQUEST_KEYS if key != "beam_width"}  # no beam search to fake
    constraint_kinds = KINDS  # takes every constraint, emits counts only (no text to check)
    stamps_sequences = True  # request arg n > 1: each step yields one chunk per sequence, index on it
    serves_lora = True  # multi-LoRA: takes any adapter, runs none; loads cost `lora_load_ms`, `lora_slots` of them held

    @classmethod
    def check_args(cls, given: dict[str, str]) -> None:
        resolve_engine_args("null", given, DEFAULT_ARGS)

    @classmethod
    def why_no_step_records(cls, given: dict[str, str]) -> str | None:
        if resolve_engine_args("null", given, DEFAULT_ARGS)["step_alpha_ms"] > 0:
            return None
        return "the null engine fakes engine steps only with --engine-arg step_alpha_ms=MS (engines/null_steps.py)"

    def __init__(self, model: ModelSource | None, engine_args: dict[str, str] | None = None):
        self.model = model
        self.args = resolve_engine_args("null", engine_args or {}, DEFAULT_ARGS)
        self._slots: asyncio.Semaphore | None = None
        self.running, self.waiting, self.num_started = 0, 0, 0
        self._ballast: bytearray | None = None
        self._compiled: set[str] = set()  # constraint names seen: their grammar is "compiled"
        self.num_chunks = 0
        self._loaded: dict[str, None] = {}  # LoRA adapters in a slot, least recently used first
        self._steps: FakeStepLoop | None = None
        self._jitter = random.Random(0) if self.args["prefill_jitter_ms"] > 0 else None
        if self.args["step_alpha_ms"] > 0:
            self.telemetry_rows = []
            a = self.args
            self._steps = FakeStepLoop(
                a["step_alpha_ms"], a["step_beta_ms"], a["step_noise_ms"], a["step_chunk_tokens"], self.telemetry_rows
            )

    async def start(self) -> None:
        capacity = self.args["capacity"]
        self._slots = asyncio.Semaphore(capacity) if capacity > 0 else None
        if self.args["start_alloc_mib"]:
            self._ballast = bytearray(self.args["start_alloc_mib"] << 20)  # zero-filled: every page touched

    async def stop(self) -> None:
        self._slots, self._ballast = None, None
        if self._steps is not None:
            await self._steps.stop()

    async def hold_admissions(self) -> bool:
        if self._steps is None:
            return False
        self._steps.held = True
        return True

    async def release_admissions(self, num_requests: int) -> int | None:
        return await self._steps.release(num_requests)

    async def reset_cache(self) -> None:
        return None

    def describe(self) -> EngineDescription:
        capacity = self.args["capacity"]
        return EngineDescription(
            name="null",
            version="1",
            engine_args=dict(self.args),
            model={"id": "none (null engine emits no real tokens)", "dtype": None, "quantization": None},
            capabilities=Capabilities(
                continuous_batching=True,
                prefix_cache=False,
                engine_timestamps=False,
                ignore_eos=True,
                max_concurrent_requests=capacity or None,
            ),
            notes=["fake engine: no model runs; timings are a schedule, not inference"],
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        if self._steps is not None:  # batched fake steps: one token a step once the prefill is done
            async for count in self._steps.stream(request.num_prompt_tokens, request.max_output_tokens):
                yield Chunk(count, token_ids=[0] * count)
            yield Chunk(0, finish_reason="length", num_prompt_tokens=request.num_prompt_tokens)
            return
        interval_s = (self.args["interval_ms"] + (self.args["mask_ms"] if request.constraint else 0)) / 1e3
        compile_s = 0.0
        if request.constraint is not None and request.constraint.name not in self._compiled:
            self._compiled.add(request.constraint.name)
            compile_s = self.args["compile_ms"] / 1e3
        compile_s += self._lora_load_s(request.lora_name)
        per_chunk = max(1, self.args["tokens_per_chunk"])
        total = request.max_output_tokens
        with_ids = request.constraint is None  # a constrained fake output carries no ids: there is nothing to validate
        full_chunk = Chunk(
            per_chunk, token_ids=[0] * per_chunk if with_ids else None
        )  # shared: the runner only reads it
        changed_at = self.args["change_token_at"] if with_ids else -1
        think = self.args["think_tokens"] if request.reasoning_end_token_id is not None else 0
        sequences = self.request_args.get("n", 1)
        self.waiting += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        self.num_started += 1
        if self.num_started <= self.args["slow_first_requests"]:
            interval_s *= self.args["slow_factor"]
        try:
            hang_after = self.args["hang_after_requests"]
            if hang_after and self.num_started > hang_after:
                await asyncio.Event().wait()  # never set: a hung engine
            jitter_s = self._jitter.uniform(0, self.args["prefill_jitter_ms"] / 1e3) if self._jitter else 0.0
            deadline = time.perf_counter() + self.args["prefill_ms"] / 1e3 + compile_s + jitter_s
            emitted = 0
            spec = self._spec_counts()
            sizes = self._step_sizes(spec) if spec else None
            while emitted < total:
                if interval_s or deadline > time.perf_counter():
                    deadline += interval_s
                    delay = deadline - time.perf_counter()
                    await asyncio.sleep(delay if delay > 0 else 0)
                count = min(next(sizes) if sizes else per_chunk, total - emitted)
                emitted += count
                self._collect_now()
                if think:  # ids: 0 while thinking, the end id after `think` tokens, then 1s (the answer)
                    ids = [
                        0 if i < think else request.reasoning_end_token_id if i == think else 1
                        for i in range(emitted - count, emitted)
                    ]
                    yield Chunk(count, token_ids=ids)
                    continue
                if emitted - count <= changed_at < emitted:
                    yield Chunk(count, token_ids=[int(i == changed_at) for i in range(emitted - count, emitted)])
                else:
                    yield (
                        full_chunk if count == per_chunk else Chunk(count, token_ids=[0] * count if with_ids else None)
                    )
                for sequence in range(1, sequences):  # n > 1: the other sequences' tokens of this step
                    yield Chunk(count, sequence=sequence)
            if self.request_args.get("logprobs") is not None:
                yield Chunk(0, finish_reason="length", num_logprob_tokens=emitted * sequences)
        finally:
            self.running -= 1
            if self._slots is not None:
                self._slots.release()
        yield Chunk(
            0,
            finish_reason="length",
            num_prompt_tokens=request.num_prompt_tokens,
            engine_metrics={"spec_decode": spec} if spec else None,
        )

    def _spec_counts(self) -> dict | None:
        if not self.args["spec_tokens"]:
            return None
        return {"num_spec_tokens": self.args["spec_tokens"], "per_step_drafted": [], "per_step_accepted": []}

    def _step_sizes(self, spec: dict):
        """Tokens per step with speculation: 1 (the prefill's), then accepted + 1 a step, counted into `spec`."""
        yield 1
        pattern = [int(v) for v in str(self.args["spec_accepted"]).split(",") if v.strip()] or [0]
        for step in itertools.count():
            accepted = min(pattern[step % len(pattern)], spec["num_spec_tokens"])
            spec["per_step_drafted"].append(spec["num_spec_tokens"])
            spec["per_step_accepted"].append(accepted)
            yield accepted + 1

    def _collect_now(self) -> None:
        every = self.args["gc_collect_every"]
        self.num_chunks += 1
        if every and self.num_chunks % every == 0:
            gc.collect()

    def use_lora(self, adapters) -> None:
        self.lora_names = [a.name for a in adapters]

    def _lora_load_s(self, name: str | None) -> float:
        """0 for the base model or an adapter in a slot; else a load (the least recently used one evicted)."""
        if name is None:
            return 0.0
        if name in self._loaded:
            self._loaded[name] = self._loaded.pop(name)  # most recently used now
            return 0.0
        if self.args["lora_slots"] and len(self._loaded) >= self.args["lora_slots"]:
            del self._loaded[next(iter(self._loaded))]
        self._loaded[name] = None
        return self.args["lora_load_ms"] / 1e3

    async def telemetry_snapshot(self) -> dict[str, int]:
        """Requests holding a slot, and requests waiting for one."""
        return {"running": self.running, "waiting": self.waiting}
