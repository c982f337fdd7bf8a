"""llama.cpp's prompt-lookup decoding, counted: `LlamaPromptLookupDecoding` wrapped so that every proposal and
what the next step accepted of it are known, per request, in the harness's schema (compare/analysis/speculative.py).

`Llama.generate` (llama-cpp-python 0.3) evaluates [last token] + the draft in one step, samples at each position,
and stops at the first sampled token that differs from the draft; then it asks the draft model again with every id
so far. So a call's input length grows by the tokens the step before it sampled: accepted + 1. A step ends where
the next call begins, which is also where the worker hands the step's tokens to the stream as one chunk.
"""

from __future__ import annotations

from typing import Any


class CountingPromptLookup:
    """A draft model for `Llama(draft_model=...)`: prompt lookup, with per-step counts of the current request."""

    def __init__(self, num_pred_tokens: int, max_ngram_size: int):
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.lookup = LlamaPromptLookupDecoding(max_ngram_size=max_ngram_size, num_pred_tokens=num_pred_tokens)
        self.num_pred_tokens = num_pred_tokens
        self.on_step = None  # called at every step boundary (the worker flushes the step's tokens)
        self.begin(0)

    def begin(self, num_prompt_tokens: int) -> None:
        """A new request: its prompt length, and no calls yet."""
        self.num_prompt_tokens = num_prompt_tokens
        self.calls: list[tuple[int, int]] = []  # (output tokens before the call, tokens drafted)

    def __call__(self, input_ids, /, **kwargs: Any):
        if self.on_step is not None:
            self.on_step()
        draft = self.lookup(input_ids, **kwargs)
        self.calls.append((len(input_ids) - self.num_prompt_tokens, len(draft)))
        return draft

    def counts(self, num_output_tokens: int) -> dict[str, Any]:
        """Per verified step (a call that drafted something): drafted and accepted (what the step sampled, less
        the bonus token); the last step's from the tokens the request received, which a stop may have cut."""
        ends = [before for before, _ in self.calls[1:]] + [num_output_tokens]
        steps = [(drafted, end - before - 1) for (before, drafted), end in zip(self.calls, ends) if drafted]
        return {
            "num_spec_tokens": self.num_pred_tokens,
            "per_step_drafted": [drafted for drafted, _ in steps],
            "per_step_accepted": [max(0, min(accepted, drafted)) for drafted, accepted in steps],
        }
