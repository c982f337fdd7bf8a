"""The ablation table: every point against the baseline, per scenario and cell, from `--vs`'s comparison.

Each row is point / baseline for one metric with its 95% bootstrap interval and the verdict of
compare/analysis/vs.py (not significant when the interval holds 1 or stays inside the minimum effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compare.analysis.agreement import agreement_text, divergence_warning, run_agreement
from compare.analysis.vs import MIN_EFFECT, VsRow, compare_runs

TABLE_METRICS = ("TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "TPOT p50", "E2E p99", "output tok/s")


@dataclass
class AblationRow:
    scenario: str
    point: str
    row: VsRow

    def to_json(self) -> dict[str, Any]:
        r = self.row
        return {
            "scenario": self.scenario,
            "point": self.point,
            "cell_id": r.cell_id,
            "metric": r.metric,
            "baseline": r.a,
            "value": r.b,
            "ratio": r.ratio.value,
            "ratio_low": r.ratio.low,
            "ratio_high": r.ratio.high,
            "significant": r.significant,
            "verdict": r.verdict,
        }


def ablation_rows(
    baseline_runs: dict[str, Any],
    point_runs: dict[str, dict[str, Any]],
    min_effect: float = MIN_EFFECT,
    aa_label: str | None = None,
) -> list[AblationRow]:
    """baseline_runs: scenario -> stored run; point_runs: point label -> scenario -> stored run.
    `aa_label`: the baseline's second run (--repeat-baseline). Each metric's A/A difference then becomes the
    minimum effect of the other points' same row: an effect no larger than two runs of the baseline differ
    by is not significant."""
    rows = []
    for label, runs in point_runs.items():
        for scenario, run in runs.items():
            base = baseline_runs.get(scenario)
            if base is None:
                continue
            for row in compare_runs(base, run, min_effect):
                if row.metric in TABLE_METRICS:
                    rows.append(AblationRow(scenario, label, row))
    noise = {(r.scenario, r.row.cell_id, r.row.metric): r.row.ratio.value for r in rows if r.point == aa_label}
    for item in rows:
        aa_ratio = noise.get((item.scenario, item.row.cell_id, item.row.metric))
        if item.point != aa_label and aa_ratio:
            item.row.min_effect = max(min_effect, max(aa_ratio, 1 / aa_ratio) - 1)
            item.row.min_effect_from = "A/A"
    return rows


def agreement_rows(baseline_runs: dict[str, Any], point_runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point, scenario and cell: its outputs against the baseline's (compare/analysis/agreement.py)."""
    rows = []
    for label, runs in point_runs.items():
        for scenario, run in runs.items():
            base = baseline_runs.get(scenario)
            if base is not None:
                for cell_id, figures in run_agreement(base.doc, run.doc).items():
                    rows.append(
                        {
                            "scenario": scenario,
                            "point": label,
                            "cell_id": cell_id,
                            **figures,
                            "warning": divergence_warning(label, figures),
                        }
                    )
    return rows


def agreement_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Outputs against the baseline's, per point and cell; a point whose outputs changed is flagged WARNING."""
    if not rows:
        return ["outputs vs baseline: not compared (no fingerprints: a text-only engine)"]
    lines = ["outputs vs baseline (greedy, same prompts): a faster point that says something else is not the same work"]
    for row in rows:
        flag = "WARNING " if row["warning"] else ""
        lines.append(f"{row['scenario']:13} {row['point'][:28]:28} {row['cell_id']:14} {flag}{agreement_text(row)}")
    return lines


def ablation_lines(rows: list[AblationRow], baseline: str) -> list[str]:
    if not rows:
        return ["ablation table: no point has a cell in common with the baseline (did the baseline fail?)"]
    lines = [
        f"ablation table: each point / baseline ({baseline}); 95% bootstrap interval over requests",
        f"{'scenario':13} {'point':28} {'cell':14} {'metric':12} {'baseline':>9} {'point':>9} "
        f"{'ratio [95% CI]':>22}  verdict",
    ]
    for item in rows:
        r = item.row
        ci = f"{r.ratio.value:.3f} [{r.ratio.low:.3f}, {r.ratio.high:.3f}]"
        lines.append(
            f"{item.scenario:13} {item.point[:28]:28} {r.cell_id:14} {r.metric:12} {r.a:9.2f} {r.b:9.2f} "
            f"{ci:>22}  {r.verdict}"
        )
    significant = sum(item.row.significant for item in rows)
    floor = min(item.row.min_effect for item in rows)
    lines.append(
        f"{significant} of {len(rows)} comparisons significant (interval beyond +-{floor:.0%}, or beyond the A/A "
        "difference where the baseline ran twice); latencies: lower is better, tok/s: higher"
    )
    return lines


def ablation_markdown(
    rows: list[AblationRow], baseline: str, question: str, agreement: list[dict[str, Any]] = ()
) -> str:
    out = [
        f"# Ablation: {question}",
        "",
        f"Each point against the baseline ({baseline}): ratio point / baseline with a 95% "
        "bootstrap interval over requests; *not significant* when the interval holds 1 or reaches inside the minimum "
        "effect (3%, or the A/A difference of the same row where the baseline ran twice).",
        "",
        "| scenario | point | cell | metric | baseline | point | ratio [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in rows:
        r = item.row
        out.append(
            f"| {item.scenario} | {item.point} | {r.cell_id} | {r.metric} | {r.a:.2f} | {r.b:.2f} | "
            f"{r.ratio.value:.3f} [{r.ratio.low:.3f}, {r.ratio.high:.3f}] | {r.verdict} |"
        )
    if agreement:
        out += [
            "",
            "## Outputs against the baseline's",
            "",
            "Greedy outputs of the same prompts, by request "
            "(compare/analysis/agreement.py). **Diverges** marks a point that changed what the model said.",
            "",
            "| scenario | point | cell | outputs |",
            "|---|---|---|---|",
        ]
        for row in agreement:
            flag = "**diverges**: " if row["warning"] else ""
            out.append(f"| {row['scenario']} | {row['point']} | {row['cell_id']} | {flag}{agreement_text(row)} |")
    return "\n".join(out) + "\n"
