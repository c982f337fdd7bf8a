"""The HTML page's own parts without a browser (compare/report/html.py): the report's markdown as HTML, a sweep's
ablation table found beside its points' folders, and every cell's warnings."""

from types import SimpleNamespace

import pytest

from compare.report.html import ablation_sections, markdown_html, warnings_section

pytestmark = pytest.mark.unit


def test_the_reports_markdown_becomes_headings_tables_code_lists_and_paragraphs(tmp_path):
    text = "## Runs\n\n| a | b |\n|---|---|\n| `x` | **y** |\n\n```\nalpha 7 ms\n```\n- one <item>\nplain"
    page = markdown_html(text, tmp_path)
    assert (
        "<h2>Runs</h2>" in page and "<tr><th>a</th><th>b</th></tr><tr><td><code>x</code></td><td><b>y</b></td>" in page
    )
    assert "<pre>alpha 7 ms</pre>" in page and "<li>one &lt;item&gt;</li>" in page and "<p>plain</p>" in page
    assert "(figure not found)" in markdown_html("![the curve](missing.png)", tmp_path)


def test_a_sweeps_ablation_table_and_every_cells_warnings_are_on_the_page(tmp_path):
    sweep = tmp_path / "sweep_spec-decode_x"
    (sweep / "00-vllm-inprocess-off").mkdir(parents=True)
    (sweep / "ablation.md").write_text("| point | tok/s |\n|---|---|\n| off | 100 |\n")
    cells = [{"cell_id": "c4", "warnings": ["unstable: TTFT CV 44%"]}, {"cell_id": "c1", "warnings": []}]
    point = SimpleNamespace(
        path=sweep / "00-vllm-inprocess-off" / "vllm_x.json", doc={"scenario": {"name": "single"}, "cells": cells}
    )
    alone = SimpleNamespace(path=tmp_path / "vllm_y.json", doc={"scenario": {"name": "single"}, "cells": []})
    (table,) = ablation_sections([point, alone, point])  # once per sweep; a run outside a sweep has none
    assert "sweep_spec-decode_x" in table and "<td>off</td><td>100</td>" in table
    warnings = warnings_section([point], {id(point): "vllm"})
    assert "vllm single: 1 warning(s)" in warnings and "<li>c4: unstable: TTFT CV 44%</li>" in warnings
