"""`python -m compare.report DIR --html`: one self-contained page, no network at view time. Plotly's JavaScript is
inlined once; everything report.md has follows (its PNG figures inlined as data), then the interactive plots
(compare/report/html_figures.py) and a timeline per cell.

The page checks itself: once loaded, `#render-status` says how many plots there are, how many rendered and every
JavaScript error (tests/test_html_report.py reads it through headless Chromium). `#timeline-only` in the address
shows the first timeline alone (for a screenshot)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from compare.report import html_figures

STATUS_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  setTimeout(function () {
    var plots = document.querySelectorAll('.plotly-graph-div');
    var rendered = 0;
    // rendered: laid out, and data drawn in its SVG (a WebGL trace where WebGL is missing draws nothing)
    plots.forEach(function (p) { if (p._fullLayout && p.querySelector('.cartesianlayer .trace')) rendered += 1; });
    var status = document.getElementById('render-status');
    status.textContent = 'plots=' + plots.length + ' rendered=' + rendered + ' errors=' + window.__errors.length
      + (window.__errors.length ? ': ' + window.__errors.join(' | ') : '');
    if (location.hash === '#timeline-only') {
      document.querySelectorAll('body > section').forEach(function (s) {
        s.style.display = s.classList.contains('first-timeline') ? '' : 'none'; });
    }
  }, 0);
});
"""
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;
font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}pre{background:#f6f6f6;padding:8px;overflow-x:auto;
font-size:12px}img{max-width:100%}.note{color:#555}"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _image(line: str, folder: Path) -> str:
    match = re.match(r"!\[(.*)\]\((.*)\)", line)
    path = folder / match.group(2)
    if not path.is_file():
        return f"<p class=note>{html.escape(match.group(1))} (figure not found)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(match.group(1))}" src="data:image/png;base64,{data}">'


def markdown_html(text: str, folder: Path) -> str:
    """The report's markdown as HTML: headings, tables, code blocks, lists, figures (inlined), paragraphs."""
    out, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append("<pre>" + html.escape("\n".join(lines[index + 1 : end])) + "</pre>")
            index = end + 1
            continue
        if line.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                cells = [c.strip() for c in lines[index].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    tag = "th" if not rows else "td"
                    rows.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
                index += 1
            out.append("<table>" + "".join(rows) + "</table>")
            continue
        heading = re.match(r"(#{1,4}) (.*)", line)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("!["):
            out.append(_image(line, folder))
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        index += 1
    return "\n".join(out)


def ablation_sections(runs: list) -> list[str]:
    """The ablation table of every sweep the runs come from (its ablation.md, beside the points' folders)."""
    tables = dict.fromkeys(r.path.parent.parent / "ablation.md" for r in runs if r.path.parent.name[:2].isdigit())
    return [
        f"<section><h2>Ablation: {html.escape(t.parent.name)}</h2>{markdown_html(t.read_text(), t.parent)}</section>"
        for t in tables
        if t.is_file()
    ]


def warnings_section(runs: list, names: dict[int, str]) -> str:
    """Every cell's warnings, per run (folded: open one to read it)."""
    parts = []
    for run in runs:
        cells = [(c["cell_id"], c.get("warnings") or []) for c in run.doc["cells"]]
        count = sum(len(w) for _, w in cells)
        items = "".join(f"<li>{html.escape(cell)}: {html.escape(w)}</li>" for cell, ws in cells for w in ws)
        title = f"{names[id(run)]} {run.doc['scenario']['name']}: {count} warning(s)"
        parts.append(f"<details><summary>{html.escape(title)}</summary><ul>{items}</ul></details>")
    return "<section><h2>Warnings</h2>" + "".join(parts) + "</section>"


def write_html(runs: list, names: dict[int, str], report_md: Path, out: Path, first: tuple = (None, None)) -> Path:
    """report.html beside report.md: the report, its interactive plots, and a timeline per cell (up to
    MAX_TIMELINES, the rest named with the --trace command that draws them), `first` (run, cell id) leading."""
    import plotly.offline

    sections = [f"<section>{markdown_html(report_md.read_text(encoding='utf-8'), report_md.parent)}</section>"]
    sections += ablation_sections(runs) + [warnings_section(runs, names)]
    plots = html_figures.concurrency(runs, names) + html_figures.latency_cdfs(runs, names)
    plots += html_figures.step_cost(runs, names)
    body = "".join(p.to_html(full_html=False, include_plotlyjs=False) for p in plots)
    sections.append(f"<section><h2>Interactive plots</h2>{body}</section>")
    cells = [(run, cell) for run in runs for cell in run.doc["cells"] if cell["requests"]]
    cells.sort(key=lambda rc: rc[0] is not first[0] or rc[1]["cell_id"] != first[1])  # stable: the rest in order
    for number, (run, cell) in enumerate(cells[: html_figures.MAX_TIMELINES]):
        figure = html_figures.timeline(run, names[id(run)], cell)
        first = " class=first-timeline" if number == 0 else ""
        sections.append(f"<section{first}>{figure.to_html(full_html=False, include_plotlyjs=False)}</section>")
    if len(cells) > html_figures.MAX_TIMELINES:
        left = len(cells) - html_figures.MAX_TIMELINES
        sections.append(f"<section><p class=note>{left} more cells: python -m compare.report DIR --trace</p></section>")
    page = (
        f"<!DOCTYPE html><html><head><meta charset=utf-8><title>enginebench report</title><style>{STYLE}</style>"
        f"<script>{STATUS_SCRIPT}</script><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
        "<div id=render-status>loading</div>" + "".join(sections) + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
