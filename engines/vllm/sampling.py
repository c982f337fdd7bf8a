"""vLLM's request side: every request's `SamplingParams`, with the run's request args (engines/request_args.py),
checked by vLLM itself before anything starts and read back for the results; and its `LoRARequest` (multi-LoRA)."""

from __future__ import annotations

from typing import Any

from engines.base import Request, UsageError
from engines.constraints import KINDS, vllm_structured
from engines.request_args import REQUEST_KEYS


class VLLMSampling:
    """The request side of vLLM's engines; it reads only what it declares here (the engine fills lora_ids)."""

    name = "vllm"
    # every one a SamplingParams field of the same name; beam search only where the stream is (VLLMEngine)
    request_keys = {key: key for key in REQUEST_KEYS if key != "beam_width"}
    constraint_kinds = KINDS  # structured output: SamplingParams(structured_outputs=...)
    request_args: dict[str, Any] = {}
    lora_ids: dict[str, int] = {}  # multi-LoRA: adapter name -> vLLM's lora_int_id (1, 2, ...)
    lora_modules: list[str] = []

    def _lora_request(self, request: Request):
        if request.lora_name is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(request.lora_name, self.lora_ids[request.lora_name], request.lora_path)

    @classmethod
    def check_request_args(cls, passed: dict[str, Any]) -> None:
        """vLLM's own checks of the combination (stop strings need detokenize, ...), before anything starts."""
        from vllm import SamplingParams

        if passed.get("beam_width", 1) != 1:
            return _check_beam_args(cls.name, passed)
        passed = {k: v for k, v in passed.items() if k != "beam_width"}  # 1: no beam search
        try:
            SamplingParams(max_tokens=2, **passed)
        except Exception as exc:  # vLLM's VLLMValidationError, ValueError, TypeError
            raise UsageError(f"engine {cls.name!r}: request args {passed}: {exc}") from None

    def _sampling_params(self, request: Request, output_kind):
        from vllm import SamplingParams

        params = {
            "max_tokens": request.max_output_tokens,
            "min_tokens": request.min_new_tokens,
            "ignore_eos": request.ignore_eos,
            "temperature": request.temperature,
            "output_kind": output_kind,
        }
        if request.constraint is not None:
            params["structured_outputs"] = vllm_structured(request.constraint)
        return SamplingParams(**{**params, **self.request_args})  # --request-arg: SamplingParams fields by name

    def effective_request_args(self) -> dict[str, Any]:
        """What vLLM's SamplingParams holds for each request arg, read back from one built as every request's is."""
        from vllm.sampling_params import RequestOutputKind

        if "beam_width" in self.request_args:
            from engines.vllm.beam import beam_search_params

            params = beam_search_params(Request("probe", (1,), 2, 0), self.request_args)
            return {name: _plain(getattr(params, name)) for name in self.request_args}
        params = self._sampling_params(Request("probe", (1,), 2, 0), RequestOutputKind.DELTA)
        return {name: _plain(getattr(params, name)) for name in self.request_args}


def _check_beam_args(engine: str, passed: dict[str, Any]) -> None:
    """Beam search (vLLM's BeamSearchParams) takes a width and a temperature, nothing else of ours."""
    from vllm.sampling_params import BeamSearchParams

    others = sorted(set(passed) - {"beam_width", "temperature"})
    if others:
        raise UsageError(
            f"engine {engine!r}: beam search (beam_width) takes temperature only; drop {', '.join(others)}"
        )
    BeamSearchParams(max_tokens=2, **passed)


def _plain(value: Any) -> Any:
    """A SamplingParams attribute as JSON can hold it (sets and tuples as lists)."""
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value) if isinstance(value, tuple) else value
