"""H1-H5 verdicts on constructed result sets with known answers (FAKE runs: tests/fakes.py), and the roofline."""

import pytest

from compare.report.hypotheses import h1_shared_prefix, h2_concurrency, h3_single_latency, h4_degradation, h5_korean
from compare.report.roofline import decode_mbu, device_for, parameter_counts, roofline
from compare.results.records import RequestRecord
from tests.fakes import fake_run, steady_records

pytestmark = pytest.mark.unit
PREFIX = {"cell_id": "c1-in128", "concurrency": 1, "prompt_mode": "shared-prefix"}


def prefix_run(engine, itl_ms, n=30, jitter=0.02, seed=0):
    return fake_run(engine, "prefix-cache", [(PREFIX, steady_records(n, 20, itl_ms, jitter=jitter, seed=seed))])


def test_h1_supported_when_sglang_is_clearly_faster_per_request():
    verdict = h1_shared_prefix([prefix_run("sglang", 5.0), prefix_run("vllm", 6.0, seed=1)])
    assert verdict.verdict == "supported" and verdict.ci.low > 1.05
    assert "SGLang / vLLM" in verdict.effect and len(verdict.data) == 2


def test_h1_not_supported_when_the_engines_are_equal():
    verdict = h1_shared_prefix([prefix_run("sglang", 6.0), prefix_run("vllm", 6.0, seed=1)])
    assert verdict.verdict == "not supported" and verdict.ci.high < 1.05


def test_h1_inconclusive_when_the_interval_crosses_the_threshold():
    def spread(engine, scale):  # per-request speeds from 4 to 9 ms per token: a wide interval
        records = [r for i, itl in enumerate((6, 4, 9, 5, 8, 6, 7)) for r in steady_records(1, 20, itl * scale, seed=i)]
        return fake_run(engine, "prefix-cache", [(PREFIX, records)])

    verdict = h1_shared_prefix([spread("sglang", 1 / 1.05), spread("vllm", 1.0)])
    assert verdict.verdict == "inconclusive" and verdict.ci.contains(1.05)


def test_h1_not_testable_names_the_missing_run():
    verdict = h1_shared_prefix([prefix_run("vllm", 6.0)])
    assert (
        verdict.verdict == "not testable" and "--engine sglang --engine vllm --scenario prefix-cache" in verdict.missing
    )


def test_runs_on_different_hardware_are_never_paired():
    verdict = h1_shared_prefix(
        [
            prefix_run("sglang", 5.0),
            fake_run("vllm", "prefix-cache", [(PREFIX, steady_records(30, 20, 6))], hardware="NVIDIA A100-SXM4-40GB"),
        ]
    )
    assert verdict.verdict == "not testable"


def concurrent_run(engine, growth_itl, ttft_at, hardware="NVIDIA H100 80GB HBM3"):
    """Levels 1, 8, 64: ITL and TTFT per level from the given functions of concurrency."""
    cells = [
        (
            {"cell_id": f"c{c}-in512", "concurrency": c, "prompt_mode": "same", "prompt_tokens": 512},
            steady_records(max(6, 2 * c), ttft_at(c), growth_itl(c), concurrency=c, prompt_tokens=512, seed=c),
        )
        for c in (1, 8, 64)
    ]
    return fake_run(engine, "concurrent", cells, hardware=hardware)


def test_h2_supported_when_batching_multiplies_throughput_and_a_stand_in_is_named():
    batching = concurrent_run("vllm", lambda c: 6.0 * (1 + c / 200), lambda c: 20.0 * (1 + c / 32))
    sequential = concurrent_run("llamacpp", lambda c: 6.0 * c, lambda c: 20.0 * c)
    verdict = h2_concurrency([batching, sequential])
    assert verdict.verdict == "supported" and verdict.ci.low > 2
    assert any("stands in for Ollama" in c for c in verdict.caveats)


def test_h3_competitive_within_the_threshold_and_not_beyond_it():
    def single(engine, itl_ms, seed):
        return fake_run(
            engine,
            "single",
            [({"cell_id": "c1-in512", "concurrency": 1}, steady_records(20, 30, itl_ms, seed=seed, jitter=0.01))],
        )

    near = h3_single_latency([single("vllm", 6.0, 0), single("ollama", 6.3, 1)])
    far = h3_single_latency([single("vllm", 6.0, 0), single("ollama", 9.0, 1)])
    assert near.verdict == "supported" and far.verdict == "not supported"


def test_h4_growth_factors_that_differ_twofold_are_supported_and_equal_ones_not():
    steep = concurrent_run("vllm", lambda c: 6.0, lambda c: 20.0 * (1 + 3 * (c > 1) * c / 64))
    flat = concurrent_run("sglang", lambda c: 6.0, lambda c: 20.0 * (1 + 1.5 * (c > 1) * c / 64))
    same = concurrent_run("sglang", lambda c: 6.0, lambda c: 20.0 * (1 + 3 * (c > 1) * c / 64))
    assert h4_degradation([steep, flat]).verdict == "supported"
    assert h4_degradation([steep, same]).verdict == "not supported"
    assert h4_degradation([steep]).verdict == "not testable"


def korean_run(engine, ko_tokens, seed=0):
    cells = []
    for language, prompt_tokens in (("ko", ko_tokens), ("en", 100)):
        records = steady_records(8, 20, 6.0, prompt_tokens=prompt_tokens, seed=seed, prompt_chars=200, output_chars=64)
        cells.append(
            (
                {
                    "cell_id": f"c1-essay-{language}",
                    "concurrency": 1,
                    "kind": "essay",
                    "language": language,
                    "prompt_mode": "language-pairs",
                    "prompt_tokens": None,
                },
                records,
            )
        )
    return fake_run(engine, "korean", cells)


def test_h5_supported_when_tokenizers_split_korean_differently_and_not_when_they_agree():
    differ = h5_korean([korean_run("vllm", 160), korean_run("ollama", 200, seed=1)])
    agree = h5_korean([korean_run("vllm", 160), korean_run("sglang", 160, seed=1)])
    assert differ.verdict == "supported" and "25.0%" in differ.effect
    assert agree.verdict == "not supported"
    assert any("Korean / English prompt tokens for the same meaning: essay 1.60" in d for d in agree.details)


def test_roofline_decode_mbu_by_hand_for_llama_3_1_8b_on_an_h100():
    shape = dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        tie_word_embeddings=False,
    )
    counts = parameter_counts(shape)
    assert counts["total"] == pytest.approx(8.03e9, rel=0.001)
    assert (
        counts["read_per_decode_step"] == counts["total"] - 128256 * 4096
    )  # the input embedding is looked up, not read
    cell = {
        "summary": {"itl_ms": {"p50": 6.5}},
        "config": {"concurrency": 1, "prompt_tokens": 512, "output_tokens": 256},
    }
    row = decode_mbu(shape, 2, cell, device_for("NVIDIA H100 80GB HBM3"))
    kv = 640 * 2 * 32 * 8 * 128 * 2  # mean context 512 + 128 tokens, K and V, every layer, bf16
    assert row["achieved_tb_s"] == pytest.approx((counts["read_per_decode_step"] * 2 + kv) / 6.5e-3 / 1e12)
    assert row["mbu"] == pytest.approx(row["achieved_tb_s"] / 3.35)
    assert device_for("NVIDIA H100 PCIe").name == "H100 PCIe" and device_for("NVIDIA H200").name == "H200"


def test_roofline_on_a_cpu_run_says_why_not():
    run = fake_run(
        "vllm", "single", [({"cell_id": "c1-in128", "concurrency": 1}, steady_records(4, 20, 6))], hardware=None
    )
    assert roofline(run)["why_not"].startswith("no GPU in this run (CPU)")


def test_fakes_are_plain_records():
    assert isinstance(steady_records(1, 10, 5)[0], RequestRecord)


GROUPS = {
    "cell_id": "c16-in128",
    "concurrency": 16,
    "prompt_mode": "shared-prefix",
    "request_rate": None,
    "traffic": {"kind": "shared-prefix groups"},
}


def test_h1_under_load_compares_shared_prefix_cells_at_concurrency_16_with_both_hit_rates():
    def groups_run(engine, itl_ms, cached, seed):
        records = steady_records(40, 30, itl_ms, concurrency=16, seed=seed, cached_tokens=cached, prompt_tokens=2176)
        return fake_run(engine, "shared-prefix", [(GROUPS, records)])

    verdict = h1_shared_prefix([groups_run("sglang", 5.0, 2048, 0), groups_run("vllm", 6.0, 1024, 1)])
    (line,) = [d for d in verdict.details if d.startswith("under load, c16-in128")]
    assert "supported at > 1.05" in line and "prefix hit rate SGLang 94.1% vs vLLM 47.1%" in line
    assert verdict.verdict == "not testable"  # the sequential claim still needs its prefix-cache runs


def test_the_latency_knee_is_the_lowest_rate_whose_ttft_p50_doubles():
    from compare.report.load_curves import latency_knee

    cells = [
        (
            {"cell_id": f"r{rate}-in512", "concurrency": 0, "request_rate": rate, "input_tokens": 512},
            steady_records(10, ttft, 6.0, seed=rate),
        )
        for rate, ttft in ((1, 20.0), (4, 30.0), (8, 45.0), (16, 200.0))
    ]
    line = latency_knee(fake_run("vllm", "concurrent", cells))
    assert line.startswith("vllm open loop, input 512: knee at 8 req/s")
    flat = [(config, steady_records(10, 20.0, 6.0, seed=i)) for i, (config, _) in enumerate(cells)]
    assert "no knee up to 16 req/s" in latency_knee(fake_run("vllm", "concurrent", flat))


def warm_run(engine, itl_ms, slow_first=0):
    """Levels 1 and 8, 80 FAKE requests each; at c=8 the first `slow_first` run 3x slower (a warm-up); every cell
    with its steady window, as the harness derives it."""
    from compare.analysis.steady import steady_window

    cells = []
    for c in (1, 8):
        slow = steady_records(slow_first, 20, itl_ms(c) * 3, concurrency=c, seed=c) if slow_first and c == 8 else []
        rest = steady_records(80 - len(slow), 20, itl_ms(c), concurrency=c, seed=c + 1)
        for r in rest:  # sent after the warm-up's last request ends
            r.sent_ns += slow[-1].sent_ns + slow[-1].end_ns if slow else 0
            r.id = f"later-{r.id}"
        config = {"cell_id": f"c{c}-in512", "concurrency": c, "prompt_mode": "same", "prompt_tokens": 512}
        cells.append((config, slow + rest))
    run = fake_run(engine, "concurrent", cells)
    for cell in run.doc["cells"]:
        cell["steady"] = steady_window(cell["requests"])
    return run


def test_verdicts_compare_steady_windows_where_every_cell_has_one_and_say_so():
    batching, sequential = warm_run("vllm", lambda c: 6.0, slow_first=16), warm_run("llamacpp", lambda c: 6.0 * c)
    top_b, top_s = batching.doc["cells"][-1], sequential.doc["cells"][-1]
    assert top_b["steady"]["warmup_requests"] == 16 and top_s["steady"]["warmup_requests"] == 0
    steady_ratio = top_b["steady"]["output_tok_per_s"] / top_s["steady"]["output_tok_per_s"]
    whole_ratio = top_b["summary"]["output_tok_per_s"] / top_s["summary"]["output_tok_per_s"]
    assert steady_ratio > 1.2 * whole_ratio  # the warm-up costs the whole cell a quarter of its throughput
    verdict = h2_concurrency([batching, sequential])
    assert verdict.ci.value == pytest.approx(steady_ratio) and "(steady windows)" in verdict.details[0]
    top_s["steady"] = {"verdict": "no steady state", "why": "FAKE"}  # one cell without: whole cells, both
    verdict = h2_concurrency([batching, sequential])
    assert verdict.ci.value == pytest.approx(whole_ratio) and "steady" not in verdict.details[0]
