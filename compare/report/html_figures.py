"""The HTML report's interactive plots (Plotly figures; compare/report/html.py inlines Plotly's JavaScript once):
the report's figures with zoom, hover per request and per point, and legends that filter, and one timeline per cell
drawn from its trace (compare/report/trace.py): requests as bars, engine steps beneath, on one axis."""

from __future__ import annotations

import numpy as np

from compare.analysis.stepcost import predicted_step_ms, shape_samples
from compare.report.figures import reference_cell
from compare.report.stepcost_report import fitted
from compare.report.trace import ENGINE, REQUESTS, cell_trace

MAX_TIMELINES = 24  # cells drawn as timelines on one page; the rest: --trace
MAX_TICKS = 20_000  # chunk ticks drawn per timeline (SVG: WebGL is not there in every browser); past it every k-th
PHASE_COLORS = {"to the engine": "#c7c7c7", "queued": "#ff9896", "prefill": "#d62728", "decode": "#1f77b4"}


def _go():
    import plotly.graph_objects as go

    return go


def concurrency(runs: list, names: dict[int, str]) -> list:
    go = _go()
    concurrent = [r for r in runs if r.doc["scenario"]["name"] == "concurrent" and r.doc["cells"]]
    if not concurrent:
        return []
    throughput, ttft = go.Figure(), go.Figure()
    for run in concurrent:
        cells = sorted(run.doc["cells"], key=lambda c: c["config"]["concurrency"])
        levels, ids = [c["config"]["concurrency"] for c in cells], [c["cell_id"] for c in cells]
        name = names[id(run)]
        throughput.add_scatter(x=levels, y=[c["summary"]["output_tok_per_s"] for c in cells], name=name, text=ids)
        for quantile in ("p50", "p99"):
            values = [c["summary"]["ttft_ms"].get(quantile) for c in cells]
            ttft.add_scatter(x=levels, y=values, name=f"{name} {quantile}", text=ids)
    throughput.update_layout(title="output tok/s against concurrency", xaxis_type="log", xaxis_title="concurrency")
    ttft.update_layout(title="TTFT (ms) against concurrency", xaxis_type="log", xaxis_title="concurrency")
    return [throughput, ttft]


def latency_cdfs(runs: list, names: dict[int, str]) -> list:
    """Per scenario, the TTFT CDF of its reference cell per run; hover names the request."""
    go, made = _go(), []
    for scenario in dict.fromkeys(r.doc["scenario"]["name"] for r in runs):
        series = [(names[id(r)], r) for r in runs if r.doc["scenario"]["name"] == scenario and r.doc["cells"]]
        cell_id = reference_cell(series) if series else None
        if cell_id is None:
            continue
        figure = go.Figure()
        for name, run in series:
            cell = next(c for c in run.doc["cells"] if c["cell_id"] == cell_id)
            records = sorted((r for r in cell["requests"] if r.ok and r.chunk_ns), key=lambda r: r.ttft_ms)
            share = np.arange(1, len(records) + 1) / max(1, len(records))
            figure.add_scatter(x=[r.ttft_ms for r in records], y=share, name=name, text=[r.id for r in records])
        figure.update_layout(title=f"{scenario} {cell_id}: TTFT CDF", xaxis_title="TTFT (ms)", yaxis_title="share")
        made.append(figure)
    return made


def step_cost(runs: list, names: dict[int, str]) -> list:
    go, shaped = _go(), fitted(runs)
    if not shaped:
        return []
    figure = go.Figure()
    for run in shaped:
        fit, name = run.doc["step_cost"], names[id(run)]
        samples = [s for c in run.doc["cells"] if "tokens" in c.get("steps", {}) for s in shape_samples(c["steps"])]
        tokens = [s.tokens for s in samples]
        labels = [f"{s.point} {s.kind}" for s in samples]
        figure.add_scatter(x=tokens, y=[s.step_ms for s in samples], mode="markers", name=name, text=labels)
        predicted = [predicted_step_ms(fit, s.sequences, s.tokens, s.context_sum) for s in samples]
        figure.add_scatter(x=tokens, y=predicted, mode="markers", marker_symbol="x", name=f"{name} fit", text=labels)
    figure.update_layout(title="step time against tokens in the step, with the fit", xaxis_type="log", yaxis_type="log")
    return [figure]


def timeline(run, name: str, cell: dict) -> object:
    """The cell's trace on one axis: each request a row of phase bars (hover: request, phase, ms) with its chunks as
    ticks, the engine's steps as a row of bars beneath."""
    go = _go()
    trace = cell_trace(run, cell)
    events = trace["traceEvents"]
    figure = go.Figure()
    rows = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["pid"] == REQUESTS and "tid" in e}
    for phase, color in PHASE_COLORS.items():
        bars = [e for e in events if e["ph"] == "X" and e["pid"] == REQUESTS and e["name"] == phase]
        if bars:
            figure.add_bar(
                y=[rows[e["tid"]] for e in bars],
                x=[e["dur"] / 1e3 for e in bars],
                base=[e["ts"] / 1e3 for e in bars],
                orientation="h",
                name=phase,
                marker_color=color,
                hovertemplate="%{y} " + phase + ": %{base:.2f} ms + %{x:.2f} ms<extra></extra>",
            )
    chunks = [e for e in events if e["ph"] == "i" and e["pid"] == REQUESTS and e["name"] == "chunk"]
    every = max(1, -(-len(chunks) // MAX_TICKS))
    chunks = chunks[::every]
    figure.add_scatter(
        x=[e["ts"] / 1e3 for e in chunks],
        y=[rows[e["tid"]] for e in chunks],
        mode="markers",
        marker={"symbol": "line-ns-open", "size": 5, "color": "rgba(0, 0, 0, 0.35)"},
        name="chunks",
    )
    steps = [e for e in events if e["ph"] == "X" and e["pid"] == ENGINE]
    if steps:
        figure.add_bar(
            y=["engine steps"] * len(steps),
            x=[e["dur"] / 1e3 for e in steps],
            base=[e["ts"] / 1e3 for e in steps],
            orientation="h",
            name="engine steps",
            marker_color="#2ca02c",
            marker_line_width=1,
            hovertext=[f"{e['name']} step, running {e['args'].get('running')}" for e in steps],
            hovertemplate="%{hovertext}: %{base:.2f} ms + %{x:.2f} ms<extra></extra>",
        )
    title = f"{name} {run.doc['scenario']['name']} {cell['cell_id']}: requests and engine steps (ms from first send)"
    if "decimated" in trace["otherData"] or every > 1:  # past a limit every k-th chunk tick is drawn, and said
        title += f"<br><sub>chunk ticks: 1 in {every} drawn; {trace['otherData'].get('decimated', '')}</sub>"
    height = min(2400, max(420, 200 + 14 * (len(rows) + 1)))
    figure.update_layout(title=title, barmode="overlay", height=height, xaxis_title="ms", yaxis_autorange="reversed")
    return figure
