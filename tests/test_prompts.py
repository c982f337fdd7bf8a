"""Prompts hit the exact target token count with every shipped tokenizer, in English and Korean."""

import pytest

from workloads.prompts import PromptBuilder, load_corpus

pytestmark = pytest.mark.unit

# every length from 1 to 300, then a stride through 4096 (dense where BOS and merges matter most)
LENGTHS = list(range(1, 301)) + list(range(301, 4096, 53)) + [4096]


@pytest.fixture(scope="module", params=["llama3", "qwen"])
def tokenizer(request, llama3_tokenizer, qwen_tokenizer):
    return {"llama3": llama3_tokenizer, "qwen": qwen_tokenizer}[request.param]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_exact_length_ids_for_every_length_from_1_to_4096(tokenizer, language):
    builder = PromptBuilder(tokenizer, load_corpus(language))
    offsets = builder.offsets(7, seed=0)
    inexact = 0
    for i, n in enumerate(LENGTHS):
        prompt = builder.exact(n, offsets[i % 7])
        assert prompt.num_tokens == n
        if prompt.text_roundtrip_exact:
            assert tuple(tokenizer(prompt.text)["input_ids"]) == prompt.token_ids
        else:
            inexact += 1
    # the text re-encodes to the same ids (a cut inside a Korean syllable moves to the next word start)
    assert inexact == 0


def test_llama3_prompts_start_with_bos_and_qwen_prompts_do_not(llama3_tokenizer, qwen_tokenizer):
    assert PromptBuilder(llama3_tokenizer, load_corpus("en")).exact(5).token_ids[0] == 128000
    assert 128000 not in PromptBuilder(qwen_tokenizer, load_corpus("en")).exact(5).token_ids[:1]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_shared_prefix_prompts_keep_the_prefix_ids_byte_identical(llama3_tokenizer, language):
    builder = PromptBuilder(llama3_tokenizer, load_corpus(language))
    offsets = builder.offsets(6, seed=1)
    system = builder.exact(2048, offsets[0])
    questions = [builder.exact(2048 + 128, offset, prefix=system) for offset in offsets[1:]]
    for q in questions:
        assert q.num_tokens == 2176
        assert q.token_ids[:2048] == system.token_ids
    assert len({q.token_ids[2048:2056] for q in questions}) == len(questions)  # questions differ from their start


def test_offsets_are_seeded_distinct_and_reproducible(llama3_tokenizer):
    builder = PromptBuilder(llama3_tokenizer, load_corpus("en"))
    assert builder.offsets(100, seed=3) == builder.offsets(100, seed=3)
    assert builder.offsets(100, seed=3) != builder.offsets(100, seed=4)
    assert len(set(builder.offsets(100, seed=3))) == 100


def test_prompts_longer_than_the_source_cycle_through_it(llama3_tokenizer):
    builder = PromptBuilder(llama3_tokenizer, "A short source text about caches. " * 3)
    assert builder.exact(3000).num_tokens == 3000
