"""The design's hypotheses H1-H5, each held to a measurable claim: H1 shared prefixes, H2 concurrency,
H3 single-request latency, H4 how engines degrade with concurrency, H5 Korean vs English.

Every effect is a ratio of two runs' statistics with a 95% bootstrap interval over requests (seeded);
the verdict compares the interval with the claim's threshold (compare/analysis/stats.py: judge).
"""

from __future__ import annotations

import itertools
import math

from compare.analysis.cellstats import ok_records, per_request
from compare.analysis.ratios import MIN_REQUESTS, mean_ratio, percentile_ratio, throughput_ratio, unbounded
from compare.analysis.runsets import engine_of
from compare.analysis.stats import Interval, judge, ratio_interval
from compare.analysis.steady import steady_views
from compare.report.stepcost_report import host_floor_line
from compare.report.load_curves import (
    H4_ENGINES,
    curve,
    korean_profile,
    latency_knee,
    ratio_of_ratios,
    saturation,
    ttft_growth,
)
from compare.report.verdicts import (
    BATCHING_ENGINES,
    SEQUENTIAL_STAND_INS,
    Verdict,
    best,
    caveats,
    cell,
    cite,
    fmt_ci,
    groups,
    pick,
)

GPU_MODEL = "--model synthetic:llama-3.1-8b"
STEADY_NOTE = " (steady windows)"  # every cell of the comparison had one: warm-up and drain cut off (steady.py)


def h1_shared_prefix(runs: list) -> Verdict:
    verdict = Verdict(
        "H1",
        "SGLang shows higher throughput than vLLM on shared prefixes (RadixAttention vs PagedAttention prefix caching)",
        "prefix-cache: the requests after the first (their 2048-token prefix cached) run at least 5% faster per "
        "request "
        "on SGLang than on vLLM: mean per-request output tok/s, ratio SGLang / vLLM > 1.05",
        threshold=1.05,
    )
    h1_under_load(runs, verdict)
    chosen = pick(runs, [("sglang",), ("vllm",)], "prefix-cache")
    if chosen is None:
        verdict.missing = (
            f"python -m compare --engine sglang --engine vllm --scenario prefix-cache {GPU_MODEL}  (one GPU machine)"
        )
        return verdict
    sglang, vllm = chosen
    cs, cv = sglang.doc["cells"][0], vllm.doc["cells"][0]
    later_s, later_v = ok_records(cs)[1:], ok_records(cv)[1:]
    verdict.ci = mean_ratio(per_request(later_v, "rate"), per_request(later_s, "rate"))
    verdict.verdict = judge(verdict.ci, verdict.threshold)
    verdict.effect = f"SGLang / vLLM later-request output tok/s: {fmt_ci(verdict.ci, 3)}"
    ttft = mean_ratio(per_request(later_v, "ttft"), per_request(later_s, "ttft"))
    verdict.details.append(
        f"later-request TTFT SGLang / vLLM: {fmt_ci(ttft, 3)} (mean "
        f"{per_request(later_s, 'ttft').mean():.1f} vs {per_request(later_v, 'ttft').mean():.1f} ms)"
    )
    for run, c in ((sglang, cs), (vllm, cv)):
        prefix = c.get("prefix_cache") or {}
        verdict.details.append(
            f"{engine_of(run)}: first TTFT {prefix.get('first_ttft_ms', float('nan')):.1f} ms -> later mean "
            f"{prefix.get('later_ttft_ms_mean', float('nan')):.1f} ms; cached prompt tokens, later mean "
            f"{prefix.get('later_cached_tokens_mean') or 0:.0f}"
        )
    verdict.data = [cite(sglang, [cs["cell_id"]]), cite(vllm, [cv["cell_id"]])]
    verdict.caveats = caveats(chosen) + ["one request at a time: the effect is per-request speed, not batching"]
    return verdict


def h1_under_load(runs: list, verdict: Verdict) -> None:
    """The claim under load, beside the sequential one: on shared-prefix groups at the same open-loop rate or at
    concurrency >= 16, SGLang / vLLM output tok/s (> 1.05 supports) and TTFT p50, and the two hit rates."""
    chosen = pick(runs, [("sglang",), ("vllm",)], "shared-prefix")
    if chosen is None:
        verdict.details.append(
            "under load: not testable without shared-prefix runs of both engines: python -m compare "
            f"--engine sglang --engine vllm --scenario shared-prefix {GPU_MODEL}"
        )
        return
    sglang, vllm = chosen
    for cs in sglang.doc["cells"]:
        cv = cell(vllm, cs["cell_id"])
        loaded = cs["config"].get("request_rate") is not None or cs["config"]["concurrency"] >= 16
        if cv is None or not loaded or not ok_records(cs) or not ok_records(cv):
            continue
        (cs, cv), steady = steady_views([cs, cv])
        closed = cs["config"].get("request_rate") is None
        tok = (
            throughput_ratio(cv, cs)
            if closed
            else unbounded(cs["summary"]["output_tok_per_s"] / cv["summary"]["output_tok_per_s"])
        )
        ttft = percentile_ratio(cv, cs, "ttft", 50)
        hits = [
            "-" if (h := (c.get("traffic") or {}).get("prefix_hit_rate")) is None else f"{100 * h:.1f}%"
            for c in (cs, cv)
        ]
        verdict.details.append(
            f"under load, {cs['cell_id']}{STEADY_NOTE if steady else ''}: SGLang / vLLM output tok/s {fmt_ci(tok, 3)} "
            f"({judge(tok, verdict.threshold)} at > {verdict.threshold}), TTFT p50 {fmt_ci(ttft, 3)}; "
            f"prefix hit rate SGLang {hits[0]} vs vLLM {hits[1]}"
        )
        verdict.data.append(cite(sglang, [cs["cell_id"]]))
        verdict.data.append(cite(vllm, [cv["cell_id"]]))


def h2_concurrency(runs: list) -> Verdict:
    verdict = Verdict(
        "H2",
        "SGLang/vLLM are far better than Ollama at serving concurrent requests (continuous batching vs sequential)",
        "concurrent: at the highest concurrency both ran (>= 8), output tok/s of the batching engine is at least twice "
        "the sequential engine's (ratio > 2)",
        threshold=2.0,
    )
    pairs = [
        chosen for engine in BATCHING_ENGINES if (chosen := pick(runs, [SEQUENTIAL_STAND_INS, (engine,)], "concurrent"))
    ]
    judged = []
    for sequential, batching in pairs:
        levels = sorted(
            {c["config"]["concurrency"] for c in sequential.doc["cells"]}
            & {c["config"]["concurrency"] for c in batching.doc["cells"]}
        )
        if not levels or levels[-1] < 8:
            continue
        top = levels[-1]
        cs = next(c for c in sequential.doc["cells"] if c["config"]["concurrency"] == top)
        cb = next(c for c in batching.doc["cells"] if c["config"]["concurrency"] == top)
        (cs, cb), steady = steady_views([cs, cb])
        ci = throughput_ratio(cs, cb)
        judged.append((ci, sequential, batching, cs, cb))
        verdict.details.append(
            f"c={top}{STEADY_NOTE if steady else ''}: {engine_of(batching)} {cb['summary']['output_tok_per_s']:.1f} vs "
            f"{engine_of(sequential)} {cs['summary']['output_tok_per_s']:.1f} output tok/s: ratio {fmt_ci(ci)}"
        )
    if not judged:
        verdict.missing = (
            f"python -m compare --engine vllm --engine ollama --scenario concurrent {GPU_MODEL} --engine-arg "
            "ollama.quant=f16  (one GPU machine with an Ollama server; or --engine llamacpp as its stand-in)"
        )
        return verdict
    ci, sequential, batching, cs, cb = min(judged, key=lambda item: item[0].low)  # the weakest pair decides
    verdict.ci, verdict.verdict = ci, judge(ci, verdict.threshold)
    verdict.effect = (
        f"{engine_of(batching)} / {engine_of(sequential)} output tok/s at c={cb['config']['concurrency']}: {fmt_ci(ci)}"
    )
    verdict.data = [cite(r, [c["cell_id"]]) for _, s, b, c1, c2 in judged for r, c in ((s, c1), (b, c2))]
    verdict.caveats = caveats([sequential, batching])
    return verdict


def h3_single_latency(runs: list) -> Verdict:
    verdict = Verdict(
        "H3",
        "Ollama is competitive in single-request latency (llama.cpp's C/C++ kernels, GGUF quantization)",
        "single: at every prompt length, the sequential engine's E2E p50 is within 1.2x of the batching engine's "
        "(ratio Ollama / vLLM-or-SGLang < 1.2)",
        threshold=1.2,
    )
    chosen = pick(runs, [SEQUENTIAL_STAND_INS, BATCHING_ENGINES], "single")
    if chosen is None:
        verdict.missing = (
            f"python -m compare --engine vllm --engine ollama --scenario single {GPU_MODEL}  (one GPU machine)"
        )
        return verdict
    sequential, batching = chosen
    worst = None
    for cb in batching.doc["cells"]:
        cs = cell(sequential, cb["cell_id"])
        if cs is None or not ok_records(cs) or not ok_records(cb):
            continue
        (cb, cs), steady = steady_views([cb, cs])
        e2e = percentile_ratio(cb, cs, "e2e", 50)
        ttft = percentile_ratio(cb, cs, "ttft", 50)
        verdict.details.append(
            f"{cb['cell_id']}{STEADY_NOTE if steady else ''}: E2E p50 ratio {fmt_ci(e2e)}; "
            f"TTFT p50 ratio {fmt_ci(ttft)}"
        )
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


def h4_degradation(runs: list) -> Verdict:
    verdict = Verdict(
        "H4",
        "How performance degrades as concurrency rises differs between frameworks (scheduler architecture)",
        "concurrent: the TTFT p50 growth factor from c=1 to the highest common concurrency (>= 8) differs between two "
        "engines by at least 20% (ratio of growth factors > 1.2); saturation points reported beside it",
        threshold=1.2,
    )
    best_group = None
    for group in groups(runs).values():
        present = [r for e in H4_ENGINES if (r := best(group, e, "concurrent")) is not None]
        levels = (
            set.intersection(*(set(c["config"]["concurrency"] for c in r.doc["cells"]) for r in present))
            if present
            else set()
        )
        if (
            len(present) >= 2
            and 1 in levels
            and max(levels) >= 8
            and (best_group is None or len(present) > len(best_group[0]))
        ):
            best_group = (present, max(levels))
    verdict.details += [line for run in runs if (line := latency_knee(run))]
    verdict.details += [line for run in runs if (line := host_floor_line(run))]  # batch-shapes: the host floor per B
    if best_group is None:
        verdict.missing = (
            f"python -m compare --engine vllm --engine sglang --scenario concurrent {GPU_MODEL}  (one GPU machine)"
        )
        return verdict
    present, top = best_group
    curves = [[c for c in curve(run) if c["config"]["concurrency"] <= top] for run in present]
    ends, steady = steady_views([cell for cells in curves for cell in (cells[0], cells[-1])])  # like with like
    growth = {}
    for index, (run, cells) in enumerate(zip(present, curves)):
        low, high = ends[2 * index], ends[2 * index + 1]
        growth[engine_of(run)] = ttft_growth(low, high, seed=10 * index)
        verdict.details.append(
            f"{engine_of(run)}{STEADY_NOTE if steady else ''}: TTFT p50 x{growth[engine_of(run)][0]:.2f} from c=1 "
            f"to c={top}; output tok/s "
            f"{low['summary']['output_tok_per_s']:.0f} -> {high['summary']['output_tok_per_s']:.0f}; "
            f"{saturation(cells)}"
        )
        verdict.data.append(cite(run, [c["cell_id"] for c in cells]))
    (fast, slow) = max(itertools.permutations(growth, 2), key=lambda pair: growth[pair[0]][0] / growth[pair[1]][0])
    (g_fast, res_fast), (g_slow, res_slow) = growth[fast], growth[slow]
    smallest = min(len(ok_records(c)) for c in ends)
    verdict.ci = (
        ratio_interval(res_slow, res_fast, g_slow, g_fast) if smallest >= MIN_REQUESTS else unbounded(g_fast / g_slow)
    )
    verdict.verdict = judge(verdict.ci, verdict.threshold)
    verdict.effect = f"TTFT growth {fast} / {slow}: {fmt_ci(verdict.ci)}"
    verdict.caveats = caveats(present) + [
        "closed loop: load rises with concurrency, and so does queueing inside engines"
    ]
    return verdict


def h5_korean(runs: list) -> Verdict:
    verdict = Verdict(
        "H5",
        "Token efficiency and throughput for Korean vs English differ between frameworks (tokenizers, byte-level "
        "encoding)",
        "korean: for the same prompt kind, the Korean/English prompt-token ratio differs between two engines by >= "
        "10%, or "
        "their Korean/English output chars/s ratios differ by >= 10% (ratio of ratios > 1.1)",
        threshold=1.1,
    )
    options = [
        [r for e in H4_ENGINES if (r := best(group, e, "korean")) is not None] for group in groups(runs).values()
    ]
    present = max(options, key=len, default=[])
    profiles = {engine_of(r): korean_profile(r) for r in present}
    for engine, profile in profiles.items():
        ratios = ", ".join(f"{kind} {ratio:.2f}" for kind, ratio in profile["token_ratio"].items())
        verdict.details.append(f"{engine}: Korean / English prompt tokens for the same meaning: {ratios}")
    verdict.data = [cite(r, ["c1-*-ko", "c1-*-en"]) for r in present]
    if len(present) < 2:
        verdict.missing = (
            f"python -m compare --engine vllm --engine ollama --scenario korean {GPU_MODEL}  (two engines, one machine)"
        )
        verdict.caveats = caveats(present)
        return verdict
    (a, pa), (b, pb) = list(profiles.items())[:2]
    kinds = sorted(set(pa["token_ratio"]) & set(pb["token_ratio"]))
    token_gap = max(abs(pb["token_ratio"][k] / pa["token_ratio"][k] - 1) for k in kinds)
    verdict.details.append(
        f"prompt-token ratio {b} vs {a}: largest difference {token_gap:.1%} (tokenizers, no sampling noise)"
    )
    speed_kinds = sorted(set(pa["speed"]) & set(pb["speed"]))
    cis = [ratio_of_ratios(pa["speed"][k], pb["speed"][k]) for k in speed_kinds]
    for kind, ci in zip(speed_kinds, cis):
        verdict.details.append(f"{kind}: ({b} KO/EN chars/s) / ({a} KO/EN chars/s): {fmt_ci(ci)}")
    if token_gap >= verdict.threshold - 1:
        verdict.verdict, verdict.effect = "supported", f"prompt-token ratio differs by {token_gap:.1%}"
    elif cis:
        widest = max(cis, key=lambda ci: abs(math.log(ci.value)))
        folded = widest if widest.value >= 1 else Interval(1 / widest.value, 1 / widest.high, 1 / widest.low)
        verdict.ci, verdict.verdict = folded, judge(folded, verdict.threshold)
        verdict.effect = (
            f"token ratios equal within {token_gap:.1%}; KO/EN chars/s ratio of ratios (folded >= 1): {fmt_ci(folded)}"
        )
    verdict.caveats = caveats(present) + [
        "output chars/s of a synthetic model compares decoded random tokens: each "
        "engine's dummy weights generate other tokens, so only the prompt-token "
        "ratios speak of the languages"
    ]
    return verdict


def all_verdicts(runs: list) -> list[Verdict]:
    return [
        h1_shared_prefix(runs),
        h2_concurrency(runs),
        h3_single_latency(runs),
        h4_degradation(runs),
        h5_korean(runs),
    ]


def verdicts_by_machine(runs: list) -> dict[str, list[Verdict]]:
    """H1-H5 on each machine (hardware and model) on its own: engines are only compared where they ran together."""
    return {f"{model} on {machine}": all_verdicts(group) for (machine, model), group in groups(runs).items()}
