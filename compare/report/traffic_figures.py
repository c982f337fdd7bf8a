"""The traffic workloads' figures: TTFT per turn index (multi-turn) and the prefix hit rate against time
(shared-prefix groups, multi-turn, trace), and TTFT per LoRA adapter against its popularity rank; one line per
run and cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compare.report.figures import _pyplot, _save

WINDOW = 16  # requests per point of the hit-rate curve


def _traffic_cells(runs: list, names: dict[int, str], key: str) -> list[tuple[str, dict]]:
    return [
        (f"{names[id(r)]} {c['cell_id']}", c)
        for r in runs
        for c in r.doc["cells"]
        if (c.get("traffic") or {}).get(key) is not None
    ]


def turn_ttft(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    series = _traffic_cells(runs, names, "turns")
    if not series:
        return []
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, cell in series:
        turns = cell["traffic"]["turns"]
        index = [int(t) for t in turns]
        left.plot(index, [turns[t]["ttft_ms_p50"] or np.nan for t in turns], marker="o", label=label)
        right.plot(index, [turns[t]["prompt_tokens_mean"] for t in turns], marker="o", label=f"{label} prompt")
        right.plot(
            index,
            [turns[t]["cached_tokens_mean"] or 0 for t in turns],
            marker="x",
            linestyle="--",
            label=f"{label} cached",
        )
    for axis, ylabel in ((left, "TTFT p50 (ms)"), (right, "tokens (mean)")):
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_xlabel("turn index")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    left.set_title("TTFT per turn (multi-turn)", fontsize=9)
    right.set_title("prompt and cached tokens per turn", fontsize=9)
    return [(_save(fig, out, "turns.png"), "TTFT p50, prompt length and cached tokens per turn index (multi-turn)")]


def hit_rate_over_time(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    series = _traffic_cells(runs, names, "prefix_hit_rate")
    if not series:
        return []
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4))
    for label, cell in series:
        counted = sorted((r for r in cell["requests"] if r.ok and r.cached_tokens is not None), key=lambda r: r.sent_ns)
        if len(counted) < 2:
            continue
        cached = np.array([r.cached_tokens for r in counted], dtype=float)
        prompt = np.array([r.prompt_tokens for r in counted], dtype=float)
        window = max(1, min(WINDOW, len(counted) // 4))  # short cells: a shorter window, so the curve has points
        rate = np.convolve(cached, np.ones(window), "valid") / np.convolve(prompt, np.ones(window), "valid")
        axis.plot(
            [r.sent_ns / 1e9 for r in counted][window - 1 :], 100 * rate, marker=".", label=f"{label} (window {window})"
        )
    axis.set_xlabel("send time (s from the cell's start)")
    axis.set_ylabel(f"prefix hit rate (%), last <= {WINDOW} requests")
    axis.set_ylim(0, 100)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    return [
        (
            _save(fig, out, "hit-rate.png"),
            "Prefix hit rate (cached / prompt tokens over the last requests, window in the legend) against send time",
        )
    ]


def adapter_ttft(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """Multi-LoRA: TTFT p50 per adapter against its popularity rank (1: the most requests), and each adapter's
    first use (the load, where the engine did not hold it) as crosses."""
    series = _traffic_cells(runs, names, "by_adapter")
    if not series:
        return []
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4))
    for label, cell in series:
        rows = sorted(cell["traffic"]["by_adapter"]["adapters"].values(), key=lambda row: row["popularity_rank"])
        ranks = [row["popularity_rank"] for row in rows]
        line = axis.plot(ranks, [row["ttft_ms"]["p50"] or np.nan for row in rows], marker="o", label=f"{label} p50")
        axis.plot(
            ranks,
            [row["first_ttft_ms"] or np.nan for row in rows],
            marker="x",
            linestyle="none",
            color=line[0].get_color(),
            label=f"{label} first use",
        )
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.set_xlabel("adapter popularity rank (1: the most requests)")
    axis.set_ylabel("TTFT (ms)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    return [
        (_save(fig, out, "lora-ttft.png"), "TTFT p50 per LoRA adapter against its popularity rank, first use marked")
    ]
