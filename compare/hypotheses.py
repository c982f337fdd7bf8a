"""H1-H3 of the benchmark design, each held to a measurable claim (H4 and H5: compare/hypotheses_load.py).

Every effect is a ratio of two runs' statistics with a 95% bootstrap interval over requests (seeded);
the verdict compares the interval with the claim's threshold (compare/stats.py: judge).
"""

from __future__ import annotations

from compare.cellstats import ok_records, per_request
from compare.ratios import mean_ratio, percentile_ratio, throughput_ratio
from compare.runsets import engine_of
from compare.stats import judge
from compare.verdicts import (
    BATCHING_ENGINES,
    SEQUENTIAL_STAND_INS,
    Verdict,
    caveats,
    cell,
    cite,
    fmt_ci,
    pick,
)

GPU_MODEL = "--model synthetic:llama-3.1-8b"


def h1_shared_prefix(runs: list) -> Verdict:
    verdict = Verdict(
        "H1", "SGLang shows higher throughput than vLLM on shared prefixes (RadixAttention vs PagedAttention prefix caching)",
        "prefix-cache: the requests after the first (their 2048-token prefix cached) run at least 5% faster per request "
        "on SGLang than on vLLM: mean per-request output tok/s, ratio SGLang / vLLM > 1.05", threshold=1.05)  # fmt: skip
    chosen = pick(runs, [("sglang",), ("vllm",)], "prefix-cache")
    if chosen is None:
        verdict.missing = f"python -m compare --engine sglang --engine vllm --scenario prefix-cache {GPU_MODEL}  (one GPU machine)"
        return verdict
    sglang, vllm = chosen
    cs, cv = sglang.doc["cells"][0], vllm.doc["cells"][0]
    later_s, later_v = ok_records(cs)[1:], ok_records(cv)[1:]
    verdict.ci = mean_ratio(per_request(later_v, "rate"), per_request(later_s, "rate"))
    verdict.verdict = judge(verdict.ci, verdict.threshold)
    verdict.effect = f"SGLang / vLLM later-request output tok/s: {fmt_ci(verdict.ci, 3)}"
    ttft = mean_ratio(per_request(later_v, "ttft"), per_request(later_s, "ttft"))
    verdict.details.append(f"later-request TTFT SGLang / vLLM: {fmt_ci(ttft, 3)} (mean "
                           f"{per_request(later_s, 'ttft').mean():.1f} vs {per_request(later_v, 'ttft').mean():.1f} ms)")  # fmt: skip
    for run, c in ((sglang, cs), (vllm, cv)):
        prefix = c.get("prefix_cache") or {}
        verdict.details.append(
            f"{engine_of(run)}: first TTFT {prefix.get('first_ttft_ms', float('nan')):.1f} ms -> later mean "
            f"{prefix.get('later_ttft_ms_mean', float('nan')):.1f} ms; cached prompt tokens, later mean "
            f"{prefix.get('later_cached_tokens_mean') or 0:.0f}")
    verdict.data = [cite(sglang, [cs["cell_id"]]), cite(vllm, [cv["cell_id"]])]
    verdict.caveats = caveats(chosen) + ["one request at a time: the effect is per-request speed, not batching"]
    return verdict


def h2_concurrency(runs: list) -> Verdict:
    verdict = Verdict(
        "H2", "SGLang/vLLM are far better than Ollama at serving concurrent requests (continuous batching vs sequential)",
        "concurrent: at the highest concurrency both ran (>= 8), output tok/s of the batching engine is at least twice "
        "the sequential engine's (ratio > 2)", threshold=2.0)  # fmt: skip
    pairs = [chosen for engine in BATCHING_ENGINES if (chosen := pick(runs, [SEQUENTIAL_STAND_INS, (engine,)], "concurrent"))]
    judged = []
    for sequential, batching in pairs:
        levels = sorted({c["config"]["concurrency"] for c in sequential.doc["cells"]}
                        & {c["config"]["concurrency"] for c in batching.doc["cells"]})  # fmt: skip
        if not levels or levels[-1] < 8:
            continue
        top = levels[-1]
        cs = next(c for c in sequential.doc["cells"] if c["config"]["concurrency"] == top)
        cb = next(c for c in batching.doc["cells"] if c["config"]["concurrency"] == top)
        ci = throughput_ratio(cs, cb)
        judged.append((ci, sequential, batching, cs, cb))
        verdict.details.append(f"c={top}: {engine_of(batching)} {cb['summary']['output_tok_per_s']:.1f} vs "
                               f"{engine_of(sequential)} {cs['summary']['output_tok_per_s']:.1f} output tok/s: ratio {fmt_ci(ci)}")  # fmt: skip
    if not judged:
        verdict.missing = (f"python -m compare --engine vllm --engine ollama --scenario concurrent {GPU_MODEL} --engine-arg "
                           "ollama.quant=f16  (one GPU machine with an Ollama server; or --engine llamacpp as its stand-in)")  # fmt: skip
        return verdict
    ci, sequential, batching, cs, cb = min(judged, key=lambda item: item[0].low)  # the weakest pair decides
    verdict.ci, verdict.verdict = ci, judge(ci, verdict.threshold)
    verdict.effect = f"{engine_of(batching)} / {engine_of(sequential)} output tok/s at c={cb['config']['concurrency']}: {fmt_ci(ci)}"
    verdict.data = [cite(r, [c["cell_id"]]) for _, s, b, c1, c2 in judged for r, c in ((s, c1), (b, c2))]
    verdict.caveats = caveats([sequential, batching])
    return verdict


def h3_single_latency(runs: list) -> Verdict:
    verdict = Verdict(
        "H3", "Ollama is competitive in single-request latency (llama.cpp's C/C++ kernels, GGUF quantization)",
        "single: at every prompt length, the sequential engine's E2E p50 is within 1.2x of the batching engine's "
        "(ratio Ollama / vLLM-or-SGLang < 1.2)", threshold=1.2)  # fmt: skip
    chosen = pick(runs, [SEQUENTIAL_STAND_INS, BATCHING_ENGINES], "single")
    if chosen is None:
        verdict.missing = f"python -m compare --engine vllm --engine ollama --scenario single {GPU_MODEL}  (one GPU machine)"
        return verdict
    sequential, batching = chosen
    worst = None
    for cb in batching.doc["cells"]:
        cs = cell(sequential, cb["cell_id"])
        if cs is None or not ok_records(cs) or not ok_records(cb):
            continue
        e2e = percentile_ratio(cb, cs, "e2e", 50)
        ttft = percentile_ratio(cb, cs, "ttft", 50)
        verdict.details.append(f"{cb['cell_id']}: E2E p50 ratio {fmt_ci(e2e)}; TTFT p50 ratio {fmt_ci(ttft)}")
        verdict.data.append(cite(sequential, [cs["cell_id"]]))
        if worst is None or e2e.value > worst.value:
            worst = e2e
    if worst is None:
        verdict.missing = "the two single runs share no cell: rerun both with the same --input-tokens"
        return verdict
    verdict.ci, verdict.verdict = worst, judge(worst, verdict.threshold, higher_supports=False)
    verdict.effect = f"{engine_of(sequential)} / {engine_of(batching)} E2E p50, worst prompt length: {fmt_ci(worst)}"
    verdict.data.append(cite(batching, [c["cell_id"] for c in batching.doc["cells"]]))
    verdict.caveats = caveats(chosen)
    return verdict
