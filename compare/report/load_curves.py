"""What the load and language verdicts read from runs: concurrency curves, saturation, TTFT growth, the
open-loop latency knee, and the Korean/English profile (compare/report/hypotheses.py judges with them)."""

from __future__ import annotations

import math

import numpy as np

from compare.analysis.cellstats import latency_resamples, ok_records
from compare.analysis.ratios import mean_ratio, unbounded
from compare.analysis.runsets import engine_of
from compare.analysis.stats import Interval

SATURATION_GAIN = 1.10  # output tok/s rising less than 10% per doubling of concurrency: saturated
H4_ENGINES = ("sglang", "vllm", "ollama", "llamacpp", "hf")


def curve(run) -> list[dict]:
    """The concurrent scenario's cells in concurrency order."""
    return sorted(run.doc["cells"], key=lambda c: c["config"]["concurrency"])


def saturation(cells: list[dict]) -> str:
    for before, after in zip(cells, cells[1:]):
        doublings = math.log2(after["config"]["concurrency"] / before["config"]["concurrency"])
        gain = (after["summary"]["output_tok_per_s"] / before["summary"]["output_tok_per_s"]) ** (1 / doublings)
        if gain < SATURATION_GAIN:
            low, high = before["config"]["concurrency"], after["config"]["concurrency"]
            return f"saturates after c={low} (x{gain:.2f} per doubling to c={high})"
    return f"still rising >= 10% per doubling at c={cells[-1]['config']['concurrency']}"


def ttft_growth(low: dict, high: dict, seed: int) -> tuple[float, np.ndarray]:
    """TTFT p50 at the top concurrency over TTFT p50 at concurrency 1, with resamples."""
    a, a_res = latency_resamples(ok_records(low), "ttft", 50, seed=seed)
    b, b_res = latency_resamples(ok_records(high), "ttft", 50, seed=seed + 100)
    return b / a, b_res / a_res


KNEE_FACTOR = 2.0  # TTFT p50 this many times the lowest rate's: past the knee


def latency_knee(run) -> str | None:
    """Open-loop runs: the lowest rate whose TTFT p50 is KNEE_FACTOR x the lowest rate's, per prompt length."""
    rated = [c for c in run.doc["cells"] if c["config"].get("request_rate") not in (None, "inf") and ok_records(c)]
    by_length: dict = {}
    for c in rated:
        by_length.setdefault(c["config"].get("input_tokens"), []).append(c)
    lines = []
    for length, cells in by_length.items():
        cells.sort(key=lambda c: float(c["config"]["request_rate"]))
        if len(cells) < 2:
            continue
        base = cells[0]["summary"]["ttft_ms"]["p50"]
        knee = next((c for c in cells if c["summary"]["ttft_ms"]["p50"] >= KNEE_FACTOR * base), None)
        rates = ", ".join(
            f"{float(c['config']['request_rate']):g}: {c['summary']['ttft_ms']['p50']:.0f} ms" for c in cells
        )
        where = (
            f"knee at {float(knee['config']['request_rate']):g} req/s"
            if knee
            else f"no knee up to {float(cells[-1]['config']['request_rate']):g} req/s"
        )
        lines.append(
            f"{engine_of(run)} open loop, input {length}: {where} (TTFT p50 >= {KNEE_FACTOR:g}x the lowest rate's; "
            f"{rates})"
        )
    return "; ".join(lines) or None


def language_cells(run) -> dict[tuple[int, str], dict[str, dict]]:
    """(concurrency, kind) -> language -> cell, for the korean scenario."""
    found: dict[tuple[int, str], dict[str, dict]] = {}
    for c in run.doc["cells"]:
        found.setdefault((c["config"]["concurrency"], c["config"]["kind"]), {})[c["config"]["language"]] = c
    return found


def chars_per_s(c: dict) -> np.ndarray:
    return np.array([r.output_chars / (r.end_ns / 1e9) for r in ok_records(c) if r.output_chars and r.end_ns])


def korean_profile(run) -> dict:
    """Per engine: Korean / English prompt tokens for the same meaning, and output chars/s KO / EN at c=1."""
    token_ratio, speed = {}, {}
    for (concurrency, kind), cells in language_cells(run).items():
        if "ko" not in cells or "en" not in cells:
            continue
        ko, en = cells["ko"], cells["en"]
        token_ratio[kind] = ko["requests"][0].prompt_tokens / en["requests"][0].prompt_tokens
        if concurrency == 1 and chars_per_s(ko).size and chars_per_s(en).size:
            speed[kind] = (chars_per_s(en), chars_per_s(ko))
    return {"token_ratio": token_ratio, "speed": speed}


def ratio_of_ratios(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> Interval:
    """(b's KO / EN mean chars/s) / (a's), each mean ratio bootstrapped."""
    ra, rb = mean_ratio(*a), mean_ratio(*b)
    if math.isinf(ra.high) or math.isinf(rb.high):
        return unbounded(rb.value / ra.value)
    return Interval(rb.value / ra.value, rb.low / ra.high, rb.high / ra.low)
