"""The report as markdown: runs, side-by-side tables, verdicts, roofline, pairs and figures. It renders
what the analysis computed (objects read by attribute), and computes nothing itself."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def figure_cell(figure) -> str:
    if figure is None or figure.value is None:
        return "-"
    digits = 0 if abs(figure.value) >= 1000 else 1 if abs(figure.value) >= 10 else 2
    if figure.ci is None:
        return fmt(float(figure.value), digits)
    return f"{fmt(figure.value, digits)} [{fmt(figure.ci.low, digits)}, {fmt(figure.ci.high, digits)}]"


def runs_section(runs: list, names: dict[int, str], describe) -> list[str]:
    lines = [
        "## Runs",
        "",
        "| column | engine, mode | scenario | precision | hardware | date | file |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        info = describe(run)
        lines.append(
            f"| {names[id(run)]} | {info['engine']} | "
            f"{run.doc['scenario']['name']}{' (quick)' if run.doc.get('quick') else ''} "
            f"| {info['precision']} | {info['hardware']} | {run.doc['metadata']['date_utc'][:16]} | `{run.path}` |"
        )
    return lines + [""]


def tables_section(tables: list) -> list[str]:
    lines = [
        "## Side by side",
        "",
        "Latencies in ms with a 95% bootstrap interval over requests (ITL: requests resampled, their tokens "
        "pooled); throughput with the interval of its per-request (Little's law) estimate; GPU figures as "
        "sampled by NVML every 50 ms.",
        "",
    ]
    for table in tables:
        lines.append(f"### {table.scenario}")
        lines.append("")
        lines += [f"> **Not directly comparable:** {note}" for note in table.notes] or [
            "> Comparable: same model, precision, hardware and prompts."
        ]
        lines.append("")
        for cell_id, rows in table.cells.items():
            bound = table.client_bound.get(cell_id)
            lines.append(
                f"**{cell_id}**"
                + (" (steady windows: warm-up and drain cut off in every run)" if cell_id in table.steady else "")
                + (f" (client-bound: {', '.join(bound)}; latencies include client-side queueing)" if bound else "")
            )
            lines.append("")
            lines.append("| metric | " + " | ".join(table.columns) + " |")
            lines.append("|---|" + "---|" * len(table.columns))
            for row, by_column in rows.items():
                lines.append(f"| {row} | " + " | ".join(figure_cell(by_column.get(c)) for c in table.columns) + " |")
            lines.append("")
            if table.agreement.get(cell_id):
                lines += ["Greedy outputs, same prompts: " + "; ".join(table.agreement[cell_id]) + ".", ""]
    return lines


def verdicts_section(by_machine: dict[str, list]) -> list[str]:
    lines = [
        "## Hypotheses",
        "",
        "Judged on each machine (hardware and model) on its own: engines are compared only where they ran "
        "together. Each hypothesis is held to a measurable claim with a threshold. Supported: the whole 95% "
        "interval is beyond the threshold. Not supported: the whole interval falls short of it. Inconclusive: "
        "the interval crosses it (or too few requests give none). Not testable: the data is missing, and the "
        "command that would make it testable is given.",
        "",
    ]
    for machine, verdicts in by_machine.items():
        lines += machine_verdicts(machine, verdicts)
    return lines


def machine_verdicts(machine: str, verdicts: list) -> list[str]:
    lines = [f"### {machine}", "", "| | verdict | effect |", "|---|---|---|"]
    lines += [f"| {v.id} | **{v.verdict}** | {v.effect or v.missing or ''} |" for v in verdicts]
    lines.append("")
    for v in verdicts:
        lines += [f"#### {v.id}: {v.verdict}", "", f"- Hypothesis: {v.hypothesis}.", f"- Claim: {v.claim}."]
        if v.effect:
            lines.append(f"- Effect: {v.effect}.")
        lines += [f"- {detail}" for detail in v.details]
        if v.missing:
            lines.append(
                f"- To make it testable: `{v.missing.split('  (')[0]}`"
                + (f" ({v.missing.split('  (')[1]}" if "  (" in v.missing else "")
            )
        lines += [f"- Data: `{d}`" for d in v.data]
        lines += [f"- Caveat: {c}" for c in v.caveats]
        lines.append("")
    return lines


def roofline_section(entries: list[tuple[str, dict]]) -> list[str]:
    lines = [
        "## Roofline",
        "",
        "Decode MBU: (weights read per step + the batch's KV cache at mean context) / ITL p50 / peak bandwidth. "
        "Prefill MFU: (2 x weights x uncached prompt tokens + causal attention) / prefill time / peak bf16 FLOP/s, "
        "at concurrency 1; the prefill time is the engine's own where it reports one, else TTFT. Datasheet peaks.",
        "",
    ]
    devices = {}
    for name, roof in entries:
        if "why_not" in roof:
            lines.append(f"- {name}: {roof['why_not']}")
        else:
            gpus = roof.get("num_gpus", 1)
            devices[roof["device"] if gpus == 1 else f"{gpus} x {roof['device']}"] = (
                roof.get("peak_tb_s_total", roof["peak_tb_s"]),
                roof.get("peak_tflop_s_total", roof["peak_tflop_s"]),
                roof["weights_total"],
                roof["weights_read_per_step"],
                roof["bytes_per_weight"],
            )
    for device, (tb_s, tflop_s, total, read, width) in devices.items():
        lines.append(
            f"- {device}: {tb_s:g} TB/s, {tflop_s:g} bf16 TFLOP/s (the peaks of every GPU used); model "
            f"{total / 1e9:.2f} B weights, {read / 1e9:.2f} B read per decode step, {width} bytes each"
        )
    rows = [
        (name, cell_id, row)
        for name, roof in entries
        if "why_not" not in roof
        for cell_id, row in roof["cells"].items()
    ]
    if rows:
        lines += [
            "",
            "| run | cell | batch | GB read per step | ITL p50 ms | TB/s | decode MBU | prefill tokens | prefill ms "
            "(from) "
            "| TFLOP/s | prefill MFU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for name, cell_id, row in rows:
        d, p = row["decode"] or {}, row["prefill"] or {}
        lines.append(
            f"| {name} | {cell_id} | {fmt(d.get('batch'))} | "
            f"{fmt((d.get('weight_gb') or 0) + (d.get('kv_gb') or 0), 2) if d else '-'} "
            f"| {fmt(d.get('itl_ms_p50'), 2)} | {fmt(d.get('achieved_tb_s'), 2)} | "
            f"{fmt(100 * d['mbu'], 0) + '%' if d else '-'} "
            f"| {fmt(p.get('prompt_tokens'), 0)} | "
            f"{fmt(p.get('prefill_ms_p50'), 1)}{' (' + p['time_from'] + ')' if p else ''} "
            f"| {fmt(p.get('achieved_tflop_s'), 0)} | {fmt(100 * p['mfu'], 0) + '%' if p else '-'} |"
        )
    return lines + [""]


def lines_section(title: str, text: list[str]) -> list[str]:
    return [f"## {title}", "", "```", *text, "```", ""] if text else []


def figures_section(figures: list[tuple[str, str]]) -> list[str]:
    lines = ["## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines
