"""vLLM's request side: every request's `SamplingParams`, with the run's request args (engines/request_args.py),
checked by vLLM itself before anything starts and read back for the results."""

from __future__ import annotations

from typing import Any

from engines.base import Request, UsageError
from engines.constraints import KINDS, vllm_structured
from engines.request_args import REQUEST_KEYS


class VLLMSampling:
    name = "vllm"
    request_keys = {key: key for key in REQUEST_KEYS}  # every one is a SamplingParams field of the same name
    constraint_kinds = KINDS  # structured output: SamplingParams(structured_outputs=...)
    request_args: dict[str, Any] = {}

    @classmethod
    def check_request_args(cls, passed: dict[str, Any]) -> None:
        """vLLM's own checks of the combination (stop strings need detokenize, ...), before anything starts."""
        from vllm import SamplingParams

        try:
            SamplingParams(max_tokens=2, **passed)
        except Exception as exc:  # vLLM's VLLMValidationError, ValueError, TypeError
            raise UsageError(f"engine {cls.name!r}: request args {passed}: {exc}") from None

    def _sampling_params(self, request: Request, output_kind):
        from vllm import SamplingParams

        params = {"max_tokens": request.max_output_tokens, "min_tokens": request.min_new_tokens,
                  "ignore_eos": request.ignore_eos, "temperature": request.temperature, "output_kind": output_kind}
        if request.constraint is not None:
            params["structured_outputs"] = vllm_structured(request.constraint)
        return SamplingParams(**{**params, **self.request_args})  # --request-arg: SamplingParams fields by name

    def effective_request_args(self) -> dict[str, Any]:
        """What vLLM's SamplingParams holds for each request arg, read back from one built as every request's is."""
        from vllm.sampling_params import RequestOutputKind

        params = self._sampling_params(Request("probe", (1,), 2, 0), RequestOutputKind.DELTA)
        return {name: _plain(getattr(params, name)) for name in self.request_args}


def _plain(value: Any) -> Any:
    """A SamplingParams attribute as JSON can hold it (sets and tuples as lists)."""
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value) if isinstance(value, tuple) else value
