"""The report's figures (matplotlib, Agg): each function draws one PNG from stored runs and returns its
file name and caption, or nothing when the runs hold no data for it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from compare.results.records import NS_PER_MS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str, tight: bool = True) -> str:
    out.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


def _scenario_runs(runs: list, names: dict[int, str], scenario: str) -> list[tuple[str, object]]:
    return [(names[id(r)], r) for r in runs if r.doc["scenario"]["name"] == scenario and r.doc["cells"]]


def concurrency_curves(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """Output tok/s and TTFT p50/p99 against concurrency, one line per run and one row per machine (H2, H4)."""
    series = _scenario_runs(runs, names, "concurrent")
    if not series:
        return []
    machines = defaultdict(list)
    for name, run in series:
        machines[_machine(run)].append((name, run))
    plt = _pyplot()
    fig, axes = plt.subplots(len(machines), 2, figsize=(11, 4 * len(machines)), squeeze=False)
    for (machine, group), (left, right) in zip(machines.items(), axes):
        for name, run in group:
            cells = sorted(run.doc["cells"], key=lambda c: c["config"]["concurrency"])
            levels = [c["config"]["concurrency"] for c in cells]
            left.plot(levels, [c["summary"]["output_tok_per_s"] or 0 for c in cells], marker="o", label=name)
            line = right.plot(
                levels, [c["summary"]["ttft_ms"].get("p50", np.nan) for c in cells], marker="o", label=f"{name} p50"
            )
            right.plot(
                levels,
                [c["summary"]["ttft_ms"].get("p99", np.nan) for c in cells],
                marker="x",
                linestyle="--",
                color=line[0].get_color(),
                label=f"{name} p99",
            )
        for axis, ylabel in ((left, "output tok/s"), (right, "TTFT (ms)")):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrency")
            axis.set_ylabel(ylabel)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7)
        left.set_title(f"throughput vs concurrency: {machine}", fontsize=9)
        right.set_title(f"TTFT vs concurrency: {machine}", fontsize=9)
    return [
        (_save(fig, out, "concurrency.png"), "Output tok/s and TTFT p50/p99 against concurrency (concurrent scenario)")
    ]


def _machine(run) -> str:
    gpus = run.doc["metadata"].get("gpus") or {}
    where = gpus["devices"][0]["name"] if gpus.get("available") and gpus.get("devices") else "CPU"
    return f"{run.doc['model'].get('spec')} on {where}"


def reference_cell(series: list[tuple[str, object]]) -> str | None:
    """The cell every run has, with the most requests: the one a CDF is drawn for."""
    common = set.intersection(*({c["cell_id"] for c in run.doc["cells"]} for _, run in series))
    sizes = {
        cid: min(len(next(c for c in run.doc["cells"] if c["cell_id"] == cid)["requests"]) for _, run in series)
        for cid in common
    }
    return max(sizes, key=lambda cid: (sizes[cid], cid)) if sizes else None


def latency_cdfs(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """TTFT and ITL CDFs per run, for each scenario's reference cell."""
    made = []
    plt = _pyplot()
    for scenario in dict.fromkeys(r.doc["scenario"]["name"] for r in runs):
        series = _scenario_runs(runs, names, scenario)
        cell_id = reference_cell(series)
        if cell_id is None:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        itl_tail = 0.0
        for name, run in series:
            records = [
                r
                for r in next(c for c in run.doc["cells"] if c["cell_id"] == cell_id)["requests"]
                if r.ok and r.chunk_ns
            ]
            ttft = np.sort([r.ttft_ms for r in records])
            itl = np.sort(np.concatenate([r.itl_ns() / NS_PER_MS for r in records] or [np.empty(0)]))
            for axis, data in ((left, ttft), (right, itl)):
                if data.size:
                    axis.plot(data, np.arange(1, data.size + 1) / data.size, label=name)
            if itl.size:
                itl_tail = max(itl_tail, float(np.percentile(itl, 99.5)))
        if itl_tail:
            right.set_xlim(0, itl_tail * 1.1)  # the last half percent would squeeze the rest into one line
        for axis, xlabel in ((left, "TTFT (ms)"), (right, "ITL (ms)")):
            axis.set_xlabel(xlabel)
            axis.set_ylabel("fraction of samples")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7)
        left.set_title(f"{scenario} {cell_id}: TTFT CDF")
        right.set_title(f"{scenario} {cell_id}: ITL CDF (to p99.5)")
        made.append((_save(fig, out, f"cdf-{scenario}.png"), f"TTFT and ITL distributions, {scenario} cell {cell_id}"))
    return made


def prefix_cache_ttft(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """TTFT per request index in the prefix-cache scenario: the first request cold, the rest on a cached prefix (H1)."""
    series = _scenario_runs(runs, names, "prefix-cache")
    if not series:
        return []
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 4))
    for name, run in series:
        records = run.doc["cells"][0]["requests"]
        axis.plot(range(len(records)), [r.ttft_ms if r.ok else np.nan for r in records], marker=".", label=name)
    axis.set_yscale("log")
    axis.set_xlabel("request index (0: cold prefix)")
    axis.set_ylabel("TTFT (ms)")
    axis.set_title("prefix cache: TTFT per request")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    return [
        (_save(fig, out, "prefix-cache.png"), "TTFT per request index, prefix-cache scenario (first request: cold)")
    ]


def korean_bars(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """Prompt tokens per character and output characters per second, Korean vs English, per run (H5)."""
    series = _scenario_runs(runs, names, "korean")
    if not series:
        return []
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / (2 * len(series))
    for index, (name, run) in enumerate(series):
        by_language = defaultdict(lambda: defaultdict(list))
        for c in run.doc["cells"]:
            language = c.get("language") or {}
            if c["config"]["concurrency"] == 1 and language:
                by_language[c["config"]["language"]]["tokens_per_char"].append(
                    language.get("prompt_tokens_per_char") or np.nan
                )
                by_language[c["config"]["language"]]["chars_per_s"].append(language.get("output_chars_per_s") or np.nan)
        for offset, lang in enumerate(("ko", "en")):
            x = index * 2 * width + offset * width
            for axis, key in ((left, "tokens_per_char"), (right, "chars_per_s")):
                values = [v for v in by_language[lang][key] if v == v]
                if values:
                    axis.bar(x, float(np.mean(values)), width, label=f"{name} {lang}")
    left.set_title("prompt tokens per character (c=1)")
    right.set_title("output characters per second (c=1)")
    for axis in (left, right):
        axis.set_xticks([])
        axis.grid(True, axis="y", alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7)
    fig.subplots_adjust(bottom=0.25)
    return [
        (
            _save(fig, out, "korean.png", tight=False),
            "Korean vs English: prompt tokens per character and output chars/s",
        )
    ]


def http_overhead_bars(comparisons: list[tuple[str, dict]], out: Path) -> list[tuple[str, str]]:
    pairs = [c for name, c in comparisons if name == "http_overhead"]
    if not pairs:
        return []
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels, ttft, rate = [], [], []
    for pair in pairs:
        for cell_id, row in pair["cells"].items():
            labels.append(f"{pair['inprocess_engine']} {pair.get('scenario', '')} {cell_id}")
            ttft.append(row["ttft_ms_p50"]["delta"] or 0)
            rate.append(row["output_tok_per_s"]["delta_pct"] or 0)
    left.barh(labels, ttft)
    right.barh(labels, rate)
    left.set_xlabel("ΔTTFT p50, HTTP - in-process (ms)")
    right.set_xlabel("Δoutput tok/s, HTTP vs in-process (%)")
    for axis in (left, right):
        axis.grid(True, axis="x", alpha=0.3)
        axis.tick_params(axis="y", labelsize=7)
    return [(_save(fig, out, "http-overhead.png"), "HTTP overhead per cell: ΔTTFT p50 and Δoutput tok/s")]


def timeline(run, name: str, cell_id: str, out: Path) -> list[tuple[str, str]]:
    """One cell, one row per request: send to end of stream, the first token, and every later chunk."""
    cell = next((c for c in run.doc["cells"] if c["cell_id"] == cell_id), None)
    if cell is None or not cell["requests"]:
        return []
    plt = _pyplot()
    records = sorted(cell["requests"], key=lambda r: r.sent_ns)[:64]
    fig, axis = plt.subplots(figsize=(10, max(3, 0.12 * len(records) + 1.5)))
    for row, r in enumerate(records):
        start = r.sent_ns / NS_PER_MS
        axis.hlines(row, start, start + (r.end_ns or 0) / NS_PER_MS, color="0.7", linewidth=1)
        chunks = start + np.asarray(r.chunk_ns) / NS_PER_MS
        axis.plot(chunks[1:], np.full(max(len(chunks) - 1, 0), row), "|", color="tab:blue", markersize=3)
        if len(chunks):
            axis.plot(chunks[0], row, "o", color="tab:red", markersize=3)
    from matplotlib.ticker import MaxNLocator

    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("ms since the cell's first send")
    axis.set_ylabel("request (by send time)")
    axis.set_title(f"{name} {run.doc['scenario']['name']} {cell_id}: send -> first token (red) -> chunks (blue) -> end")
    caption = f"Per-request timeline, {name} {run.doc['scenario']['name']} {cell_id} (first {len(records)} requests)"
    return [(_save(fig, out, "timeline.png"), caption)]
