"""`vllm-batch`: vLLM's offline `LLM.generate` over a whole cell at once, the streaming `vllm`'s twin. Its
output tok/s is the engine's best offline throughput, against which streaming is priced (analysis/pairs.py)."""

from __future__ import annotations

import asyncio

from engines.base import BatchEngine, BatchOutput, EngineDescription, ModelSource, Request
from engines.vllm_offline import _VLLMBase


class VLLMBatchEngine(_VLLMBase, BatchEngine):
    """Offline batch: `LLM.generate` over a whole cell at once. No per-token timestamps, by design."""

    name = "vllm-batch"

    def __init__(self, model: ModelSource, engine_args: dict[str, str] | None = None):
        super().__init__(model, engine_args)
        self._llm = None
        self.notes.append("offline batch: LLM.generate over all of a cell's requests at once; no per-token timestamps")

    async def start(self) -> None:
        from vllm import LLM

        self._apply_cpu_environment()
        self._llm = await asyncio.to_thread(lambda: LLM(**self.resolved))

    async def stop(self) -> None:
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None

    async def reset_cache(self) -> None:
        if self.args["enable_prefix_caching"] and not await asyncio.to_thread(self._llm.reset_prefix_cache):
            raise RuntimeError("vLLM reset_prefix_cache() returned False")

    def describe(self) -> EngineDescription:
        return self._describe(self._llm.llm_engine if self._llm else None, batch=True)

    def http_server(self) -> None:
        return None  # the offline batch path has no server; its streaming twin `vllm` has one

    async def generate_batch(self, requests: tuple[Request, ...]) -> list[BatchOutput]:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in requests]
        params = [self._sampling_params(r, RequestOutputKind.FINAL_ONLY) for r in requests]
        outputs = await asyncio.to_thread(self._llm.generate, prompts, params, use_tqdm=False)
        return [
            BatchOutput(
                num_output_tokens=len(out.outputs[0].token_ids),
                finish_reason=out.outputs[0].finish_reason,
                num_prompt_tokens=len(out.prompt_token_ids or ()),
                num_cached_tokens=out.num_cached_tokens,
                engine_metrics=self._engine_metrics(out.metrics),
            )
            for out in outputs
        ]
