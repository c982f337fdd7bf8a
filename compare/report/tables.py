"""Tables from a results document: its header, one row per cell, and the cell's details and warnings."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from compare.analysis.cellstats import joules_per_token
from compare.analysis.checks import is_client_bound
from compare.analysis.steady import MIN_STEADY_REQUESTS, steady_line


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _stat(summary: dict[str, Any], metric: str, key: str) -> str:
    return _fmt(summary.get(metric, {}).get(key))


def header_lines(doc: dict[str, Any]) -> list[str]:
    engine, model, meta = doc["engine"], doc["engine"].get("model", {}), doc["metadata"]
    gpus = meta.get("gpus", {})
    hardware = ", ".join(d["name"] for d in gpus.get("devices", [])) if gpus.get("available") else "no GPU"
    quant = model.get("quantization") or "none"
    return [
        f"engine {engine['name']} {engine['version']} | model {model.get('id')} ({model.get('architecture')}, "
        f"dtype {model.get('dtype')}, quantization {quant})",
        f"scenario {doc['scenario']['name']}{' (quick)' if doc.get('quick') else ''} | {meta['cpu']['model']} "
        f"x{meta['cpu']['affinity_cores']} | {hardware} | python {meta['python']} | {meta['date_utc']}",
    ]


def cell_table(doc: dict[str, Any]) -> Table:
    table = Table(show_lines=False, header_style="bold")
    columns = [
        "cell",
        "ok/n",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "TPOT p50",
        "E2E p50",
        "E2E p95",
        "E2E p99",
        "out tok/s",
        "req/s",
        "cached tok",
        "GPU MiB peak",
        "J/tok",
    ]
    for name in columns:
        table.add_column(name, justify="left" if name == "cell" else "right")
    for cell in doc["cells"]:
        s = cell["summary"]
        table.add_row(
            cell["cell_id"]
            + ("" if cell.get("complete", True) else " (partial)")
            + (" (client-bound)" if is_client_bound(cell) else ""),
            f"{s['num_ok']}/{s['num_requests']}",
            _stat(s, "ttft_ms", "p50"),
            _stat(s, "ttft_ms", "p99"),
            _stat(s, "itl_ms", "p50"),
            _stat(s, "itl_ms", "p99"),
            _stat(s, "tpot_ms", "p50"),
            _stat(s, "e2e_ms", "p50"),
            _stat(s, "e2e_ms", "p95"),
            _stat(s, "e2e_ms", "p99"),
            _fmt(s["output_tok_per_s"]),
            _fmt(s["request_per_s"], 2),
            _fmt(s.get("cached_tokens_total")),
            _gpu_peak(cell.get("gpu", {})),
            _joules_per_token(cell.get("energy") or {}),
        )
    table.caption = (
        "latencies in ms; TPOT = (t_last - t_first)/(n - 1) per request; ITL per token; client-bound: the "
        "harness's loop was busy >= 85% of the cell, so latencies include client-side queueing; J/tok: "
        "GPU energy (NVML counter) per output token, or CPU package energy (RAPL) marked cpu"
    )
    return table


def _gpu_peak(gpu: dict[str, Any]) -> str:
    per_gpu = gpu.get("per_gpu") or []
    return _fmt(max(g["memory_used_mib_peak"] for g in per_gpu), 0) if per_gpu else "n/a"


def _joules_per_token(energy: dict[str, Any]) -> str:
    for source, value in joules_per_token(energy).items():  # the GPU's where it counted, else the CPU's
        return f"{value:.3g}{'' if source == 'gpu' else ' cpu'}"
    return "n/a"


def detail_lines(cell: dict[str, Any]) -> list[str]:
    lines = []
    s = cell["summary"]
    if s.get("ttfa_ms"):
        lines.append(
            f"{cell['cell_id']}: reasoning: TTFT p50 {_stat(s, 'ttft_ms', 'p50')} ms, time to first answer p50 "
            f"{_stat(s, 'ttfa_ms', 'p50')} ms (p99 {_stat(s, 'ttfa_ms', 'p99')}); reasoning tokens mean "
            f"{_stat(s, 'reasoning_tokens', 'mean')}, {s['reasoning_unended']} request(s) never ended it"
        )
    prefix = cell.get("prefix_cache")
    if prefix:
        lines.append(
            f"{cell['cell_id']}: prefix cache: first TTFT {_fmt(prefix['first_ttft_ms'])} ms vs later mean "
            f"{_fmt(prefix['later_ttft_ms_mean'])} ms (x{_fmt(prefix['ttft_speedup'], 2)}); out tok/s first "
            f"{_fmt(prefix['first_output_tok_per_s'])} vs later {_fmt(prefix['later_output_tok_per_s_mean'])}; "
            f"cached tokens first {_fmt(prefix['first_cached_tokens'])}, later mean "
            f"{_fmt(prefix['later_cached_tokens_mean'])}; total {_fmt(prefix['total_time_s'], 2)} s"
        )
    language = cell.get("language")
    if language:
        lines.append(
            f"{cell['cell_id']}: prompt {_fmt(language['prompt_tokens_mean'])} tokens / "
            f"{_fmt(language['prompt_chars_mean'])} chars ({_fmt(language['prompt_tokens_per_char'], 3)} tok/char); "
            f"output {_fmt(language['output_tokens_mean'])} tokens, {_fmt(language['output_chars_per_s'])} chars/s"
        )
    lines += traffic_lines(cell)
    lag = cell["summary"].get("delivery_lag_ms", {})
    if lag.get("count"):
        lines.append(f"{cell['cell_id']}: first-token delivery lag (engine -> harness) p50 {_fmt(lag['p50'], 3)} ms")
    steady = cell.get("steady")
    if steady and len(cell["requests"]) >= MIN_STEADY_REQUESTS:  # steady state: beside the whole-cell figures
        lines.append(steady_line(cell["cell_id"], steady, cell["summary"]))
    lines += [f"{cell['cell_id']}: WARNING {w}" for w in cell.get("warnings", [])]
    return lines


def traffic_lines(cell: dict[str, Any]) -> list[str]:
    """Groups, turns and the hit rate (compare/analysis/traffic.py), where the cell is such a workload."""
    traffic, cid = cell.get("traffic"), cell["cell_id"]
    if not traffic:
        return []
    lines = [
        f"{cid}: prefix hit rate {_pct(traffic.get('prefix_hit_rate'))} (cached / prompt tokens, as the engine reports)"
    ]
    groups = traffic.get("groups")
    if groups:
        lines.append(
            f"{cid}: {groups['num_groups']} groups: TTFT p50 first {_fmt(groups['first_ttft_ms'].get('p50'))} ms vs "
            f"later "
            f"{_fmt(groups['later_ttft_ms'].get('p50'))} ms; hit rate first {_pct(groups['first_hit_rate'])} vs later "
            f"{_pct(groups['later_hit_rate'])}"
        )
    for turn, row in (traffic.get("turns") or {}).items():
        lines.append(
            f"{cid}: turn {turn}: {row['count']} requests, prompt {_fmt(row['prompt_tokens_mean'], 0)} tokens, cached "
            f"{_fmt(row['cached_tokens_mean'], 0)}, TTFT p50 {_fmt(row['ttft_ms_p50'])} ms"
        )
    adapters = traffic.get("by_adapter")
    if adapters:
        busiest = next(iter(adapters["adapters"].items()), (None, {}))
        lines.append(
            f"{cid}: LoRA: {adapters['num_adapters_used']} adapters used; TTFT p50 first use "
            f"{_fmt(adapters['first_use_ttft_ms_p50'])} ms vs later {_fmt(adapters['later_ttft_ms_p50'])} ms; "
            f"busiest {busiest[0]} ({busiest[1].get('requests')} requests)"
        )
    for bucket, row in (traffic.get("by_prompt_length") or {}).items():
        lines.append(
            f"{cid}: prompt {bucket} tokens: {row['count']} requests, TTFT p50 {_fmt(row['ttft_ms_p50'])} ms, "
            f"TPOT p50 {_fmt(row['tpot_ms_p50'], 2)} ms"
        )
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_report(doc: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for line in header_lines(doc):
        console.print(line, highlight=False, markup=False)
    console.print(cell_table(doc))
    for cell in doc["cells"]:
        for line in detail_lines(cell):
            console.print(line, highlight=False, markup=False)
