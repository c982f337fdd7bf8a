"""Two runs, cell by cell: B over A per metric, with a 95% bootstrap interval over requests, and "not
significant" where the interval contains 1 (pyperf's compare_to, on per-request samples). The tool for
ablations and regressions: `python -m compare.report A.json --vs B.json`.

The interval covers sampling noise within each run, not what changes between two runs of the same thing
(timer jitter, the machine's state). Like pyperf's `--min-speed`, a minimum effect covers that: a
difference whose interval excludes 1 but reaches inside +-min_effect is "not significant (interval within x%)". The
default, 3%, is the largest difference two identical runs of the `null` engine showed on the 2-core CI
machine (TTFT p99 and ITL p50 at 2 ms intervals)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from compare.analysis.agreement import agreement_text, run_agreement
from compare.analysis.cellstats import ok_records
from compare.analysis.ratios import MIN_REQUESTS, percentile_pair, throughput_ratio
from compare.analysis.stats import Interval
from compare.analysis.steady import steady_views

ROWS = (
    ("TTFT p50", "ttft", 50),
    ("TTFT p99", "ttft", 99),
    ("ITL p50", "itl", 50),
    ("ITL p99", "itl", 99),
    ("TPOT p50", "tpot", 50),
    ("E2E p50", "e2e", 50),
    ("E2E p99", "e2e", 99),
)


MIN_EFFECT = 0.03


@dataclass
class VsRow:
    cell_id: str
    metric: str
    a: float
    b: float
    ratio: Interval
    higher_is_better: bool
    min_effect: float = MIN_EFFECT
    min_effect_from: str = (
        ""  # "A/A": the difference between two runs of the baseline (compare/analysis/ablation_table.py)
    )
    basis: str = "whole"  # "steady": both cells' steady windows (compare/analysis/steady.py)

    @property
    def significant(self) -> bool:
        return self.ratio.low > 1 + self.min_effect or self.ratio.high < 1 / (1 + self.min_effect)

    @property
    def verdict(self) -> str:
        if math.isinf(self.ratio.high) and self.ratio.low == 0:
            return f"not significant (no interval: < {MIN_REQUESTS} requests)"
        if self.ratio.contains(1.0):
            return "not significant"
        if not self.significant:
            source = f", the {self.min_effect_from} difference" if self.min_effect_from else ""
            return f"not significant (interval reaches within {self.min_effect:.0%}{source})"
        better = (self.ratio.value > 1) == self.higher_is_better
        return f"significant: B {'better' if better else 'worse'} (x{self.ratio.value:.3f})"


def compare_runs(a, b, min_effect: float = MIN_EFFECT) -> list[VsRow]:
    """Every metric of every cell the two runs share (by cell id), B / A."""
    rows = []
    for cell_a in a.doc["cells"]:
        cell_b = next((c for c in b.doc["cells"] if c["cell_id"] == cell_a["cell_id"]), None)
        if cell_b is None:
            continue
        (cell_a, cell_b), steady = steady_views([cell_a, cell_b])  # steady windows where both cells have one
        basis = "steady" if steady else "whole"
        if len(ok_records(cell_a)) < 2 or len(ok_records(cell_b)) < 2:
            continue
        for metric, what, q in ROWS:
            try:
                va, vb, ratio = percentile_pair(cell_a, cell_b, what, q)  # unbounded below MIN_REQUESTS requests
            except ValueError:  # no samples (e.g. one-token outputs have no ITL)
                continue
            rows.append(VsRow(cell_a["cell_id"], metric, va, vb, ratio, False, min_effect, basis=basis))
        ratio = throughput_ratio(cell_a, cell_b)
        rows.append(
            VsRow(
                cell_a["cell_id"],
                "output tok/s",
                cell_a["summary"]["output_tok_per_s"],
                cell_b["summary"]["output_tok_per_s"],
                ratio,
                True,
                min_effect,
                basis=basis,
            )
        )
    return rows


def vs_lines(a, b, rows: list[VsRow]) -> list[str]:
    lines = [
        f"A: {a.path}",
        f"B: {b.path}",
        f"{'cell':16} {'metric':13} {'A':>10} {'B':>10} {'B/A [95% CI]':>24}  verdict",
    ]
    for row in rows:
        ci = f"{row.ratio.value:.3f} [{row.ratio.low:.3f}, {row.ratio.high:.3f}]"
        cell = row.cell_id + (" [s]" if row.basis == "steady" else "")
        lines.append(f"{cell:16} {row.metric:13} {row.a:10.2f} {row.b:10.2f} {ci:>24}  {row.verdict}")
    significant = sum(row.significant for row in rows)
    lines.append(
        f"{significant} of {len(rows)} comparisons significant (95% interval beyond +-{rows[0].min_effect:.0%}) "
        "; the rest: not significant"
        if rows
        else "no cell in common"
    )
    if any(row.basis == "steady" for row in rows):
        lines.append(
            "[s]: both cells' steady windows (warm-up and drain cut off: compare/analysis/steady.py); else whole"
        )
    agreement = run_agreement(a.doc, b.doc)
    for cell_id, figures in agreement.items():
        lines.append(f"{cell_id:16} {agreement_text(figures)}")
    if not agreement:
        lines.append(
            "outputs not compared: no cell of both runs carries output fingerprints (a text-only engine, or files "
            "from before them)"
        )
    return lines
