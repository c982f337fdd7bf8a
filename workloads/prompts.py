"""Prompts that hit an exact token count with the model's own tokenizer.

A prompt is token ids first (what in-process engines receive) plus the text that encodes back to
exactly those ids (what text-only engines receive). When no cut point of the source text round-trips
exactly, the ids are still exact and `text_roundtrip_exact` is False, so the mismatch is recorded
instead of hidden.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from pathlib import Path

from engines.base import UsageError

TEXTS_DIR = Path(__file__).parent / "texts"
CORPUS_FILES = {"en": TEXTS_DIR / "corpus_en.txt", "ko": TEXTS_DIR / "corpus_ko.txt"}
_SEARCH_WINDOW = 12  # cut points tried on each side of the target
_EXTRA_STARTS = 6  # later start points tried when no cut point round-trips


@dataclass(frozen=True)
class Prompt:
    token_ids: tuple[int, ...]
    text: str
    text_roundtrip_exact: bool

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def load_corpus(language: str) -> str:
    if language not in CORPUS_FILES:
        raise UsageError(f"no built-in corpus for language {language!r}; valid: {', '.join(CORPUS_FILES)}")
    return CORPUS_FILES[language].read_text(encoding="utf-8")


class PromptBuilder:
    """Cuts exact-length prompts out of a source text (cycled when a prompt needs more)."""

    def __init__(self, tokenizer, source_text: str, chat=None):
        """`chat`: a ChatWrap (workloads/chat.py): every prompt is its head, a body, its tail, of the exact length."""
        if not source_text.strip():
            raise UsageError("prompt source text is empty")
        self.tokenizer = tokenizer
        self.chat = chat
        self._source_text = source_text.strip()
        self._source_ids: list[int] = []
        self._word_starts: list[int] = []
        self._empty_ids = tuple(self._encode(""))  # BOS for tokenizers that add one
        self._extend_source(1)

    @property
    def bos_ids(self) -> tuple[int, ...]:
        """What the tokenizer puts before any text (BOS, or nothing)."""
        return self._empty_ids

    def corpus_ids(self) -> list[int]:
        """The source text's ids, one copy, no BOS (for workloads that cut their own blocks)."""
        return self.tokenizer(self._source_text, add_special_tokens=False, verbose=False)["input_ids"]

    def _encode(self, text: str) -> list[int]:  # under a chat template, the template writes the special tokens
        return self.tokenizer(text, add_special_tokens=self.chat is None, verbose=False)["input_ids"]

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _extend_source(self, min_tokens: int) -> None:
        copies = 1
        while True:
            text = "\n\n".join([self._source_text] * copies)
            ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
            if len(ids) >= min_tokens:
                break
            copies += 1
        self._source_ids = ids
        self._word_starts = [i for i, tid in enumerate(ids) if self._starts_word(tid)]

    def _starts_word(self, token_id: int) -> bool:
        piece = self._decode([token_id])
        return piece[:1].isspace() and "\ufffd" not in piece

    def offsets(self, count: int, seed: int) -> list[int]:
        """`count` distinct word-start offsets into one copy of the source, drawn with `seed`."""
        one_copy = len(self.tokenizer(self._source_text, add_special_tokens=False, verbose=False)["input_ids"])
        candidates = [i for i in self._word_starts if i < one_copy]
        if count > len(candidates):
            raise UsageError(f"source text has only {len(candidates)} distinct start points; {count} asked")
        return sorted(random.Random(seed).sample(candidates, count))

    def exact(self, num_tokens: int, offset: int = 0, prefix: Prompt | None = None, later_turn: bool = False) -> Prompt:
        """A prompt of exactly `num_tokens` ids: `prefix` (or BOS) then source text from `offset`; under a chat
        template, its head (`later_turn`: a later user turn's, after an assistant message), the body and its tail."""
        if self.chat is not None and prefix is None:
            head = Prompt(self.chat.head_ids, self.chat.head_text, True)
            if later_turn:
                head = Prompt(self.chat.turn_head_ids, self.chat.turn_head_text or "", True)
            body = self._exact(num_tokens - len(self.chat.tail_ids), offset, head)
            return Prompt(
                body.token_ids + self.chat.tail_ids, body.text + self.chat.tail_text, body.text_roundtrip_exact
            )
        return self._exact(num_tokens, offset, prefix)

    def _exact(self, num_tokens: int, offset: int, prefix: Prompt | None) -> Prompt:
        base_ids = prefix.token_ids if prefix else self._empty_ids
        base_text = prefix.text if prefix else ""
        body_len = num_tokens - len(base_ids)
        if body_len < 0:
            raise UsageError(f"prompt of {num_tokens} tokens is shorter than its {len(base_ids)}-token prefix")
        for start in self._starts_from(offset):
            needed = start + body_len + _SEARCH_WINDOW + 1
            if needed > len(self._source_ids):
                self._extend_source(needed)
            for delta in _search_order(body_len):
                body = self._source_ids[start : start + body_len + delta]
                text = base_text + self._decode(body)
                ids = self._encode(text)
                if len(ids) == num_tokens and tuple(ids[: len(base_ids)]) == base_ids:
                    return Prompt(tuple(ids), text, text_roundtrip_exact=True)
        body = self._source_ids[offset : offset + body_len]
        return Prompt(base_ids + tuple(body), base_text + self._decode(body), text_roundtrip_exact=False)

    def _starts_from(self, offset: int) -> list[int]:
        """`offset`, then the next few word starts: a cut that splits a character moves with them."""
        first_later = bisect.bisect_right(self._word_starts, offset)
        return [offset, *self._word_starts[first_later : first_later + _EXTRA_STARTS]]

    def natural(self, text: str) -> Prompt:
        """A prompt whose length is whatever the tokenizer makes of `text` (inside the chat template, if any)."""
        if self.chat is not None:
            text = self.chat.head_text + text + self.chat.tail_text
        return Prompt(tuple(self._encode(text)), text, text_roundtrip_exact=True)


def _search_order(body_len: int):
    """Cut-point deltas: 0 first, then alternating outwards; never a negative body length."""
    yield 0
    for step in range(1, _SEARCH_WINDOW + 1):
        if body_len - step >= 0:
            yield -step
        yield step
