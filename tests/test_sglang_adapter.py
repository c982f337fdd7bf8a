"""The SGLang adapter on recorded chunk sequences (SGLang cannot run on this CPU machine).

Each sequence is written to match SGLang's code (sgl-project/sglang, main at 001067ff):
- `python/sglang/srt/managers/tokenizer_manager.py::_handle_batch_output`: every chunk is
  {"text", "output_ids", "meta_info"}; by default `output_ids` is the request's live cumulative list
  (`state.output_ids`, no copy) and `text` the cumulative text; with `incremental_streaming_output`
  both are deltas; `meta_info` always has `id`, `finish_reason` (None until the end), `prompt_tokens`,
  `completion_tokens` (cumulative), `cached_tokens`; the final chunk adds `e2e_latency`.
- `python/sglang/srt/managers/scheduler_components/output_streamer.py::_GenerationStreamAccumulator.accept`:
  with `stream_interval` > 1 (or a slow consumer, where queued chunks are coalesced) one chunk carries
  several tokens; `completion_tokens` stays cumulative.
- `python/sglang/srt/managers/schedule_batch.py`: finish reasons are dicts such as
  {"type": "length", "length": N}.
- `python/sglang/srt/observability/req_time_stats.py`: with `enable_metrics`, `*_ts`,
  `forward_entry_time` and `prefill_finished_time` are wall-clock epoch seconds; `queue_time` is seconds.
The fake runtime below replays such sequences; it is a fake, not SGLang.
"""

import asyncio

import pytest

from compare.results.records import itl_samples_ns
from compare.run.runner import closed_loop
from engines.base import EngineUnavailable, Request
from engines.sglang_offline import NO_GPU, SGLangEngine, launch_flags, server_args
from engines.sglang.stream import StreamAccounting
from tests.bounds import near

pytestmark = pytest.mark.unit


def meta(completion, finish=None, prompt=32, cached=0, **extra):
    return {
        "id": "rid",
        "finish_reason": finish,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "weight_version": "default",
        **extra,
    }


def cumulative(sizes, prompt=32, cached=0, final_extra=None):
    """Chunks as SGLang streams them by default: one live list that grows after each hand-out."""
    live, total = [], 0
    for index, size in enumerate(sizes):
        live.extend(range(100 + total, 100 + total + size))
        total += size
        last = index == len(sizes) - 1
        finish = {"type": "length", "length": total} if last else None
        extra = (final_extra or {}) if last else {}
        yield {
            "text": "x" * total,
            "output_ids": live.copy() if last else live,
            "meta_info": meta(total, finish, prompt, cached, **extra),
        }


def incremental(sizes, prompt=32):
    chunks, total = [], 0
    for index, size in enumerate(sizes):
        ids = list(range(100 + total, 100 + total + size))
        total += size
        finish = {"type": "length", "length": total} if index == len(sizes) - 1 else None
        chunks.append({"text": "x" * size, "output_ids": ids, "meta_info": meta(total, finish, prompt)})
    return chunks


def convert(chunks, incremental_mode=False, offset_ns=0):
    accounting = StreamAccounting(incremental_mode, offset_ns)
    return [accounting.convert(chunk) for chunk in chunks]


def test_cumulative_chunks_count_one_token_each():
    out = convert(cumulative([1, 1, 1, 1]))
    assert [c.num_new_tokens for c in out] == [1, 1, 1, 1]
    # copied on arrival: later growth of SGLang's live list does not leak into earlier chunks
    assert [c.token_ids for c in out] == [[100], [101], [102], [103]]
    assert [c.text for c in out] == ["x", "x", "x", "x"]


def test_incremental_chunks_count_their_own_ids():
    out = convert(incremental([1, 2, 1]), incremental_mode=True)
    assert [c.num_new_tokens for c in out] == [1, 2, 1]
    assert [c.token_ids for c in out] == [[100], [101, 102], [103]]


@pytest.mark.parametrize("sizes", [[1, 2, 2, 1], [3, 3, 3], [5, 5, 1], [1, 5]])
def test_merged_chunks_carry_several_tokens(sizes):
    out = convert(cumulative(sizes))
    assert [c.num_new_tokens for c in out] == sizes
    assert sum(len(c.token_ids) for c in out) == sum(sizes)


def test_a_first_chunk_with_zero_tokens_carries_none():
    chunks = [{"text": "", "output_ids": [], "meta_info": meta(0)}, *cumulative([1, 1])]
    out = convert(chunks)
    assert [c.num_new_tokens for c in out] == [0, 1, 1]


def test_final_chunk_gives_finish_reason_prompt_cached_tokens_and_e2e():
    out = convert(cumulative([1, 1], prompt=2176, cached=2048, final_extra={"e2e_latency": 0.25}))
    final = out[-1]
    assert final.finish_reason == "length"
    assert (final.num_prompt_tokens, final.num_cached_tokens) == (2176, 2048)
    assert final.engine_metrics["durations_ns"]["e2e"] == 250_000_000
    assert final.engine_metrics["finish_reason_detail"] == {"type": "length", "length": 2}
    assert final.engine_metrics["token_count_mismatches"] == []


def test_a_disagreement_between_completion_tokens_and_ids_is_recorded():
    def chunks():
        for index, chunk in enumerate(cumulative([1, 1, 1])):
            if index == 1:
                chunk["meta_info"]["completion_tokens"] = 3  # says 2 new, the ids show 1
            yield chunk

    out = convert(chunks())
    assert out[1].num_new_tokens == 2
    assert out[-1].engine_metrics["token_count_mismatches"][0] == {
        "chunk": 1,
        "source": "completion_tokens",
        "engine_tokens": 2,
        "stream_tokens": 1,
    }


def test_wall_clock_stamps_are_aligned_to_the_harness_clock_and_durations_derived():
    offset_ns = 1_700_000_000 * 10**9  # wall - perf_counter at send

    def chunks():
        recorded = cumulative([1, 1], final_extra={"request_finished_ts": 1_700_000_010.5, "queue_time": 0.002})
        for index, chunk in enumerate(recorded):
            if index == 0:
                chunk["meta_info"].update(
                    forward_entry_time=1_700_000_010.1,
                    prefill_finished_time=1_700_000_010.2,
                    response_sent_to_client_ts=1_700_000_010.201,
                )
            yield chunk

    final = convert(chunks(), offset_ns=offset_ns)[-1].engine_metrics
    assert final["token_count_mismatches"] == []
    assert final["clock"] == "perf_counter"
    assert final["timestamps_ns"]["scheduled"] == pytest.approx(10.1e9, abs=1e3)
    assert final["timestamps_ns"]["first_token"] == pytest.approx(10.2e9, abs=1e3)
    assert final["durations_ns"]["prefill"] == pytest.approx(0.1e9, abs=1e3)
    assert final["durations_ns"]["decode"] == pytest.approx(0.3e9, abs=1e3)
    assert final["durations_ns"]["queue"] == 2_000_000


class FakeSGLangRuntime:
    """A fake `sglang.Engine`: replays a recorded chunk sequence with fixed gaps. Not SGLang."""

    def __init__(self, sizes, gap_s=0.01, flush_failures=0):
        self.sizes, self.gap_s, self.flush_failures = sizes, gap_s, flush_failures
        self.calls = []
        self.flush_timeouts = []
        self.tokenizer_manager = self

    async def async_generate(self, input_ids, sampling_params, stream):
        self.calls.append((len(input_ids), sampling_params, stream))

        async def replay():
            for chunk in cumulative(self.sizes, prompt=len(input_ids)):
                await asyncio.sleep(self.gap_s)
                yield chunk

        return replay()

    async def flush_cache(self, timeout_s=None):
        self.flush_timeouts.append(timeout_s)

        class Result:
            success = self.flush_failures <= 0
            message = "Cache not flushed because there are pending requests"

        self.flush_failures -= 1
        return Result()

    def shutdown(self):
        pass


@pytest.fixture
def model(config_only_8b):
    return config_only_8b


@pytest.mark.exclusive  # the fake runtime's real gaps
def test_adapter_through_the_runner_gives_equal_stamps_inside_a_merged_chunk(model):
    runtime = FakeSGLangRuntime([1, 3, 2], gap_s=0.02)
    engine = SGLangEngine(model, {}, runtime=runtime)
    request = Request("r0", tuple(range(32)), 6, 6)
    (record,) = asyncio.run(closed_loop(engine, (request,), 1, timeout_s=10))
    assert record.ok and record.output_tokens == 6 and record.chunk_tokens == [1, 3, 2] and len(record.chunk_ns) == 3
    times = record.token_ns
    assert times[1] == times[2] == times[3] and times[4] == times[5]
    gaps = itl_samples_ns(record.chunk_ns, record.chunk_tokens) / 1e6
    for gap, true in zip(gaps, [20 / 3] * 3 + [10, 10]):
        # worst of 13 runs, 10 alone and 3 suites (docs/testing.md): 10.34 (headroom 0.89)
        near(gap, true, 3, "per-token gap in a merged chunk (ms)")
    assert record.finish_reason == "length" and record.prompt_tokens_reported == 32
    assert runtime.calls == [
        (32, {"max_new_tokens": 6, "min_new_tokens": 6, "ignore_eos": True, "temperature": 0.0}, True)
    ]


def test_reset_cache_retries_until_the_scheduler_is_idle_and_then_fails_loudly(model, monkeypatch):
    import engines.sglang_offline

    monkeypatch.setattr(engines.sglang_offline, "FLUSH_RETRY_DELAY_S", 0.001)  # the count matters here, not the wait
    runtime = FakeSGLangRuntime([1], flush_failures=3)
    engine = SGLangEngine(model, {}, runtime=runtime)
    assert asyncio.run(engine.reset_cache()) == {"attempts": 4}  # the runner records it with the reset
    assert engine.cache_flushes == [{"attempts": 4}] and set(runtime.flush_timeouts) == {30.0}  # waits for idle
    stuck = SGLangEngine(model, {}, runtime=FakeSGLangRuntime([1], flush_failures=10**6))
    with pytest.raises(RuntimeError, match="flush_cache failed 50 times: Cache not flushed"):
        asyncio.run(stuck.reset_cache())


def test_server_args_map_through_and_choose_dummy_weights_for_config_only_models(model):
    from dataclasses import replace

    kwargs = server_args(
        {
            "disable_radix_cache": True,
            "chunked_prefill_size": -1,
            "mem_fraction_static": 0.0,
            "attention_backend": "",
            "tp_size": 1,
            "load_format": "auto",
            "random_seed": 0,
        },
        model,
    )
    assert kwargs == {
        "model_path": str(model.path),
        "tokenizer_path": str(model.path),
        "disable_radix_cache": True,
        "chunked_prefill_size": -1,
        "tp_size": 1,
        "load_format": "dummy",
        "random_seed": 0,
    }
    assert server_args({"load_format": "auto"}, model)["load_format"] == "dummy"  # config only: dummy weights
    with_weights = replace(model, has_weights=True)
    assert server_args({"load_format": "auto"}, with_weights)["load_format"] == "auto"  # weights on disk


def test_http_mode_launches_sglang_with_the_same_args_as_flags(model):
    kwargs = server_args(
        {
            "disable_radix_cache": True,
            "disable_overlap_schedule": False,
            "chunked_prefill_size": -1,
            "log_level": "error",
            "random_seed": 0,
        },
        model,
    )
    assert launch_flags(kwargs) == [
        "--tokenizer-path",
        str(model.path),
        "--disable-radix-cache",
        "--chunked-prefill-size",
        "-1",
        "--log-level",
        "error",
        "--random-seed",
        "0",
        "--load-format",
        "dummy",
    ]


def test_without_a_gpu_the_engine_refuses_in_one_line(model):
    from engines.sglang_offline import _cuda_available

    if _cuda_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(EngineUnavailable) as info:
        SGLangEngine(model, {})
    assert str(info.value) == NO_GPU and "--engine vllm" in NO_GPU


def test_cli_says_what_to_install_when_sglang_is_missing(model, capsys):
    import importlib.util

    from compare.cli.main import main

    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed here")
    assert main(["--engine", "sglang", "--model", str(model.path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: engine 'sglang' needs sglang: pip install 'enginebench[sglang]' on a GPU machine "
        "(no CPU build exists; on CPU use --engine vllm)"
    )


def test_http_server_is_a_typed_launch_of_the_same_configuration(model):
    engine = SGLangEngine(model, {"disable_radix_cache": "true"}, runtime=FakeSGLangRuntime([1]))
    launch = engine.http_server()
    assert (launch.server, launch.model) == ("sglang", str(model.path))
    assert "--disable-radix-cache" in launch.flags and "--load-format" in launch.flags


class FakeSGLangRuntimeWithSchedulerInfo(FakeSGLangRuntime):
    """A FAKE started `sglang.Engine` as 0.5.17 has it: the schedulers' init info on `_scheduler_init_result`, and a
    `get_server_info()` that calls `loop.run_until_complete`, which fails inside the harness's running loop."""

    def __init__(self, max_total_num_tokens):
        super().__init__([1])

        class InitResult:
            scheduler_infos = [{"max_total_num_tokens": max_total_num_tokens, "max_req_input_len": 8000}]

        self._scheduler_init_result = InitResult()

    async def get_internal_state(self):
        return [{"last_gen_throughput": 0.0}]

    def get_server_info(self):
        pending = asyncio.sleep(0)
        try:  # as 0.5.17 does: refused inside a running loop
            asyncio.get_event_loop().run_until_complete(pending)
        finally:
            pending.close()


def test_kv_capacity_is_read_from_the_schedulers_init_info_at_start_not_from_get_server_info(model):
    engine = SGLangEngine(model, {}, runtime=FakeSGLangRuntimeWithSchedulerInfo(262_144))

    async def start_then_ask():
        with pytest.raises(RuntimeError):  # the old path: get_server_info inside a running loop
            engine._engine.get_server_info()
        await engine.start()
        return engine.kv_capacity_tokens()

    assert asyncio.run(start_then_ask()) == 262_144
    assert SGLangEngine(model, {}, runtime=FakeSGLangRuntime([1])).kv_capacity_tokens() is None  # not started: unknown


def test_the_profiler_window_asks_for_the_cuda_profiler_under_nsys(model, monkeypatch):
    import dataclasses
    import sys
    import types

    @dataclasses.dataclass
    class FakeProfileReq:  # a FAKE of sglang.srt.managers.io_struct.ProfileReq: the fields the adapter sets
        output_dir: str | None = None
        activities: list[str] | None = None

    io_struct = types.ModuleType("sglang.srt.managers.io_struct")
    io_struct.ProfileReq = FakeProfileReq
    monkeypatch.setitem(sys.modules, "sglang.srt.managers.io_struct", io_struct)
    asked = []

    class FakeTokenizerManager:
        async def start_profile(self, req):
            asked.append(req)

        async def stop_profile(self):
            asked.append("stop")

    for kind, activities in (("torch", None), ("cuda", ["CUDA_PROFILER"])):
        engine = SGLangEngine(model, {}, runtime=FakeSGLangRuntime([1]))
        engine._engine = types.SimpleNamespace(tokenizer_manager=FakeTokenizerManager())
        engine.profile_kind = kind
        assert asyncio.run(engine.start_profile("/tmp/p")) is True
        assert asyncio.run(engine.stop_profile()) == "/tmp/p"
        assert asked[-2:] == [FakeProfileReq(output_dir="/tmp/p", activities=activities), "stop"]
