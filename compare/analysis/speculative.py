"""Speculative decoding, read from two sources and checked against each other.

- The stream: a request's chunks after its first are its decode steps (in-process engines yield one chunk per step
  while the harness keeps up), and a step of k tokens is k - 1 accepted draft tokens plus the bonus token.
- The engine's own counts, per request (`record.engine["spec_decode"]`: for every step that verified a draft, the
  tokens drafted and accepted, in order) and per step (telemetry rows: drafts, draft tokens, accepted tokens, and
  accepted per position where the engine gives them).

Acceptance length is 1 + accepted / verified drafts (vLLM's definition); acceptance rate is accepted / drafted
tokens; the curve gives, per draft position i, the share of drafts reaching position i whose token i was accepted.
The stream agrees with a request's engine counts when its multi-token steps, in order, are the engine's steps with
an accepted token, each k tokens for k - 1 accepted; the last step may be shorter (a stop cuts it). A merged chunk
(the harness's loop fell behind and the engine handed two steps at once) breaks that, and is reported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from compare.analysis.metrics import describe
from compare.analysis.stats import interval, mean_stat
from compare.results.records import NS_PER_MS, RequestRecord


def speculative_figures(records: list[RequestRecord], rows: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A cell's speculative-decoding figures; None where no engine count says a draft was verified."""
    ok = [r for r in records if r.ok]
    counted = [r for r in ok if r.engine and r.engine.get("spec_decode")]
    step_rows = [row for row in rows or () if "spec_drafts" in row]
    polled = [row for row in rows or () if "spec_drafts_total" in row]
    if polled:  # a server's cumulative counters, polled: the cell's steps are the last poll's less the first's
        first, last = polled[0], polled[-1]
        step_rows = [
            {
                "spec_drafts": last["spec_drafts_total"] - first["spec_drafts_total"],
                "spec_draft_tokens": last.get("spec_draft_tokens_total", 0) - first.get("spec_draft_tokens_total", 0),
                "spec_accepted_tokens": last.get("spec_accepted_tokens_total", 0)
                - first.get("spec_accepted_tokens_total", 0),
            }
        ]
    drafted = bool(step_rows) and (not polled or step_rows[0]["spec_drafts"] > 0)
    if not counted and not drafted:
        return None
    figures: dict[str, Any] = {"stream": stream_steps(ok)}
    if counted:
        figures["per_request"] = per_request_acceptance(counted)
        figures["agreement"] = stream_agreement(counted)
    if step_rows:
        figures["per_step"] = step_counters(step_rows)
        if polled:  # totals between two polls: no step count of their own
            figures["per_step"] = {**figures["per_step"], "steps_with_drafts": None, "source": "polled /metrics"}
    return figures


def stream_steps(ok: list[RequestRecord]) -> dict[str, Any]:
    """Tokens per decode step as the stream shows them, the share of steps at each length, and the time per step
    beside ITL (fewer, longer steps: ITL stays per token)."""
    sizes = [n for r in ok for n in r.chunk_tokens[1:]]
    gaps_ms = [gap / NS_PER_MS for r in ok for gap in np.diff(r.chunk_ns)]
    counts = Counter(sizes)
    return {
        "num_steps": len(sizes),
        "tokens_per_step_mean": float(np.mean(sizes)) if sizes else None,
        "step_share_by_tokens": {str(k): counts[k] / len(sizes) for k in sorted(counts)},
        "step_ms": describe(gaps_ms),
    }


def _request_rates(record: RequestRecord) -> tuple[float | None, float | None]:
    counts = record.engine["spec_decode"]
    accepted, drafted = sum(counts["per_step_accepted"]), sum(counts["per_step_drafted"])
    steps = len(counts["per_step_drafted"])
    return (1 + accepted / steps if steps else None), (accepted / drafted if drafted else None)


def per_request_acceptance(counted: list[RequestRecord]) -> dict[str, Any]:
    """Cell figures from every request's engine counts, with their spread over requests and 95% intervals."""
    lengths, rates = zip(*(_request_rates(r) for r in counted))
    lengths = [v for v in lengths if v is not None]
    rates = [v for v in rates if v is not None]
    accepted = [a for r in counted for a in r.engine["spec_decode"]["per_step_accepted"]]
    drafted = [d for r in counted for d in r.engine["spec_decode"]["per_step_drafted"]]
    return {
        "verified_steps": len(drafted),
        "draft_tokens": int(sum(drafted)),
        "accepted_tokens": int(sum(accepted)),
        "acceptance_rate": sum(accepted) / sum(drafted) if sum(drafted) else None,
        "acceptance_length": 1 + sum(accepted) / len(drafted) if drafted else None,
        "acceptance_length_per_request": describe(lengths),
        "acceptance_length_mean_ci": _interval(lengths),
        "acceptance_rate_per_request": describe(rates),
        "acceptance_rate_mean_ci": _interval(rates),
        "by_position": position_curve(counted),
    }


def position_curve(counted: list[RequestRecord]) -> list[dict[str, Any]]:
    """Per draft position i (1-based): drafts reaching it, the share accepted there, and its 95% interval over
    requests (each request's own share at i, resampled)."""
    depth = max((max(r.engine["spec_decode"]["per_step_drafted"], default=0) for r in counted), default=0)
    curve = []
    for position in range(1, depth + 1):
        reached = accepted = 0
        shares = []
        for record in counted:
            counts = record.engine["spec_decode"]
            pairs = [(a, d) for a, d in zip(counts["per_step_accepted"], counts["per_step_drafted"]) if d >= position]
            hits = sum(1 for a, _ in pairs if a >= position)
            reached, accepted = reached + len(pairs), accepted + hits
            if pairs:
                shares.append(hits / len(pairs))
        curve.append(
            {
                "position": position,
                "drafts": reached,
                "accepted_share": accepted / reached if reached else None,
                "accepted_share_ci": _interval(shares),
            }
        )
    return curve


def stream_agreement(counted: list[RequestRecord]) -> dict[str, Any]:
    """Requests whose stream steps match their engine counts (module docstring), and the first that does not."""
    disagree = [r.id for r in counted if not _agrees(r)]
    return {"requests": len(counted), "disagree": len(disagree), "first_disagreeing": disagree[:3]}


def _agrees(record: RequestRecord) -> bool:
    if record.chunk_sequence:  # n > 1: several sequences share the engine counts
        return True
    stream = [n - 1 for n in record.chunk_tokens[1:] if n > 1]
    engine = [a for a in record.engine["spec_decode"]["per_step_accepted"] if a > 0]
    if stream == engine:
        return True
    # a stop cut the request's last step short: it gave fewer tokens than the engine verified
    last = record.chunk_tokens[-1] - 1
    if last > 0:
        return len(stream) == len(engine) and stream[:-1] == engine[:-1] and last < engine[-1]
    return stream == engine[:-1]


def step_counters(step_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine's per-step counters over the cell: totals, and per position where it gives them."""
    drafts = sum(row["spec_drafts"] for row in step_rows)
    draft_tokens = sum(row.get("spec_draft_tokens", 0) for row in step_rows)
    accepted = sum(row.get("spec_accepted_tokens", 0) for row in step_rows)
    figures: dict[str, Any] = {
        "steps_with_drafts": sum(1 for row in step_rows if row["spec_drafts"]),
        "drafts": drafts,
        "draft_tokens": draft_tokens,
        "accepted_tokens": accepted,
        "acceptance_rate": accepted / draft_tokens if draft_tokens else None,
        "acceptance_length": 1 + accepted / drafts if drafts else None,
    }
    per_position = [row["spec_accepted_per_pos"] for row in step_rows if row.get("spec_accepted_per_pos")]
    if per_position and drafts:
        width = max(len(p) for p in per_position)
        sums = np.zeros(width)
        for counts in per_position:
            sums[: len(counts)] += counts
        figures["accepted_share_by_position"] = [float(v / drafts) for v in sums]
    return figures


def counter_agreement(figures: dict[str, Any]) -> str | None:
    """A warning where the two engine sources count different accepted tokens, or the stream disagrees."""
    lines = []
    per_request, per_step = figures.get("per_request"), figures.get("per_step")
    if per_request and per_step and per_request["accepted_tokens"] != per_step["accepted_tokens"]:
        lines.append(
            f"per-request counts {per_request['accepted_tokens']} accepted tokens, per-step counters "
            f"{per_step['accepted_tokens']} (warmups or another cell's requests inside the step window?)"
        )
    agreement = figures.get("agreement")
    if agreement and agreement["disagree"]:
        lines.append(
            f"the stream's steps disagree with the engine's counts on {agreement['disagree']} of "
            f"{agreement['requests']} requests (e.g. {agreement['first_disagreeing'][0]}): chunks merged steps, so "
            "per-step figures come from the engine's counts"
        )
    return "speculative decoding: " + "; ".join(lines) if lines else None


def _interval(values: list[float]) -> list[float] | None:
    found = interval(values, mean_stat) if len(values) >= 2 else None
    return [found.low, found.high] if found else None


def acceptance_rows(by_point: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point, scenario and cell where speculative decoding ran: acceptance and tokens per step, with intervals."""
    rows = []
    for label, runs in by_point.items():
        for scenario, run in runs.items():
            for cell in run.doc["cells"]:
                figures = cell.get("speculative")
                if not figures:
                    continue
                counts = figures.get("per_request") or figures.get("per_step") or {}
                rows.append(
                    {
                        "scenario": scenario,
                        "point": label,
                        "cell_id": cell["cell_id"],
                        "acceptance_length": counts.get("acceptance_length"),
                        "acceptance_length_mean_ci": counts.get("acceptance_length_mean_ci"),
                        "acceptance_rate": counts.get("acceptance_rate"),
                        "tokens_per_step_mean": figures["stream"]["tokens_per_step_mean"],
                        "step_ms_p50": figures["stream"]["step_ms"].get("p50"),
                    }
                )
    return rows


def acceptance_text(row: dict[str, Any]) -> str:
    ci = row["acceptance_length_mean_ci"]
    spread = f" (per-request mean [{ci[0]:.2f}, {ci[1]:.2f}])" if ci else ""
    length = f"{row['acceptance_length']:.2f}" if row["acceptance_length"] is not None else "n/a"
    rate = f"{row['acceptance_rate']:.0%}" if row["acceptance_rate"] is not None else "n/a"
    per_step = row["tokens_per_step_mean"]
    step = f", step p50 {row['step_ms_p50']:.1f} ms" if row["step_ms_p50"] is not None else ""
    return f"acceptance length {length}{spread}, rate {rate}, stream {per_step:.2f} tokens/step{step}"


def acceptance_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["speculative decoding (engine counts; acceptance length = 1 + accepted / verified drafts):"]
    for row in rows:
        lines.append(f"{row['scenario']:13} {row['point'][:28]:28} {row['cell_id']:14} {acceptance_text(row)}")
    return lines


def acceptance_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["", "## Speculative decoding", "", "| scenario | point | cell | acceptance |", "|---|---|---|---|"]
    return out + [f"| {r['scenario']} | {r['point']} | {r['cell_id']} | {acceptance_text(r)} |" for r in rows]
