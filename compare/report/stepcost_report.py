"""The report's view of the step-cost model (compare/analysis/stepcost.py, docs/steps.md): a table of every
batch-shapes fit (engines and ablation points side by side), the host floor per batch size for H4, and a figure of
step time against the step's tokens with the fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compare.analysis.stepcost import predicted_step_ms, shape_samples
from compare.report.figures import _pyplot, _save

FLAT = 1.2  # host time per step that grows less than this from the smallest to the largest B is called flat


def fitted(runs: list) -> list:
    return [r for r in runs if "coefficients" in (r.doc.get("step_cost") or {})]


def _share(values: dict, fmt: str = "{:.0%}") -> str:
    return " ".join(f"B{b}:{fmt.format(v)}" for b, v in values.items() if v is not None and v == v)


def table_lines(runs: list, names: dict[int, str]) -> list[str]:
    """One row per fitted run: alpha with its interval, beta, gamma (and delta where kept), R^2 and steps; then the
    floor's share of a decode step at each B, and the share measured outside the engine's execute call."""
    lines = []
    for run in fitted(runs):
        fit = run.doc["step_cost"]
        c, ci = fit["coefficients"], fit["ci95"]
        delta = f", delta {c['delta_per_sequence']:.3f} ms/seq" if "delta_per_sequence" in c else ""
        lines += [
            f"{names[id(run)]}: alpha {c['alpha']:.3f} ms [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], beta "
            f"{c['beta_per_token'] * 1e3:.2f} us/token [{ci['beta_per_token'][0] * 1e3:.2f}, "
            f"{ci['beta_per_token'][1] * 1e3:.2f}], gamma {c['gamma_per_context_token'] * 1e6:.2f} ns/context token"
            f"{delta}; R^2 {fit['r2']:.3f} over {fit['num_steps']} steps ({fit.get('num_prefill_steps', 0)} prefill)",
            f"    floor share of a decode step (C={fit['host_share_context']}): {_share(fit['host_share_by_batch'])}",
        ]
        outside = fit.get("between_steps_share_by_batch") or {}
        if any(v is not None for v in outside.values()):
            lines.append(f"    measured outside the engine's execute call: {_share(outside)}")
        for batch, phases in phase_ms_per_step(run).items():  # --host-profile: the engine's processes, per step
            spent = ", ".join(f"{name} {ms:.2f}" for name, ms in phases.items() if ms >= 0.005)
            lines.append(f"    B={batch} host profile, ms per step: {spent}")
    return lines


def host_floor_line(run) -> str | None:
    """H4's reading of a fit: the host time per decode step outside the engine's execute call at the smallest and
    largest B; a scheduler that hides its work keeps it flat as B grows."""
    fit = run.doc.get("step_cost") or {}
    outside, step_ms = fit.get("between_steps_share_by_batch") or {}, fit.get("decode_step_ms_by_batch") or {}
    host_ms = {b: outside[b] * step_ms[b] for b in outside if outside[b] is not None and step_ms.get(b) is not None}
    if len(host_ms) < 2:
        return None
    low, high = min(host_ms, key=int), max(host_ms, key=int)
    growth = host_ms[high] / host_ms[low] if host_ms[low] else float("inf")
    shape = "flat" if growth < FLAT else "grows with the batch"
    return (
        f"{run.doc['engine']['name']} (batch-shapes): host time per decode step outside the execute call "
        f"{host_ms[low]:.2f} ms at B={low} -> {host_ms[high]:.2f} ms at B={high} (x{growth:.2f}, {shape}); "
        f"fitted floor alpha {fit['coefficients']['alpha']:.2f} ms"
    )


def figure(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """Left: every steady step's time against its tokens (log scales), the fit's prediction for the same step as a
    cross; right: the floor's share and the measured outside-execute share against B."""
    shaped = fitted(runs)
    if not shaped:
        return []
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, run in enumerate(shaped):
        color, fit, name = f"C{index}", run.doc["step_cost"], names[id(run)]
        samples = [
            s for cell in run.doc["cells"] if "tokens" in cell.get("steps", {}) for s in shape_samples(cell["steps"])
        ]
        left.scatter([s.tokens for s in samples], [s.step_ms for s in samples], s=6, alpha=0.4, color=color, label=name)
        predicted = [predicted_step_ms(fit, s.sequences, s.tokens, s.context_sum) for s in samples]
        left.scatter([s.tokens for s in samples], predicted, s=18, marker="x", color=color, label=f"{name} fit")
        batches = [int(b) for b in fit["host_share_by_batch"]]
        right.plot(batches, list(fit["host_share_by_batch"].values()), "o-", color=color, label=f"{name} floor")
        outside = fit.get("between_steps_share_by_batch") or {}
        if any(v is not None for v in outside.values()):
            right.plot(batches, [outside[str(b)] for b in batches], "s--", color=color, label=f"{name} outside execute")
    left.set(xscale="log", yscale="log", xlabel="tokens in the step", ylabel="step ms", title="step time and the fit")
    right.set(xscale="log", xlabel="batch size B", ylabel="share of a decode step", title="host share", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    caption = "Step cost: each steady step's time against its tokens with the fit, and the host share against B"
    return [(_save(fig, out, "step_cost.png"), caption)]


ENGINE_ROLES = ("engine_core", "scheduler", "worker")  # the processes that make a step (compare/analysis/phases.json)


def phase_ms_per_step(run) -> dict[int, dict[str, float]]:
    """--host-profile on a batch-shapes run: at each B, each engine process's busy main-thread time per engine step
    by phase ("worker: model_forward", "engine_core: scheduling", ...; share x window / steps in it), averaged over
    the B's cells. Waiting is left out: what is stacked is work, and the processes wait on each other."""
    by_batch: dict[int, list[dict[str, float]]] = {}
    for cell in run.doc["cells"]:
        processes = [
            p for p in (cell.get("host_profile") or {}).get("processes") or [] if p.get("role") in ENGINE_ROLES
        ]
        rows = [r for r in (cell.get("telemetry") or {}).get("rows") or [] if "decode_tokens" in r]
        if not rows or "steps" not in cell or not any("phases" in p for p in processes):
            continue
        phases: dict[str, float] = {}
        for process in (p for p in processes if "phases" in p):
            for name, figures in process["phases"].items():
                if name != "waiting":
                    key = f"{process['role']}: {name}"
                    phases[key] = phases.get(key, 0.0) + figures["share"] * process["wall_s"] * 1e3 / len(rows)
        by_batch.setdefault(cell["steps"]["batch"], []).append(phases)
    return {
        batch: {
            name: sum(p.get(name, 0.0) for p in cells) / len(cells) for name in sorted({n for p in cells for n in p})
        }
        for batch, cells in sorted(by_batch.items())
    }


def anatomy_figure(runs: list, names: dict[int, str], out: Path) -> list[tuple[str, str]]:
    """One panel per profiled batch-shapes run: a stacked bar per B of the engine processes' busy time per step by
    process and phase (docs/anatomy.md for the phases), the measured mean decode step beside it."""
    profiled = [(run, stacks) for run in fitted(runs) if (stacks := phase_ms_per_step(run))]
    if not profiled:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(profiled), figsize=(8 * len(profiled), 4), squeeze=False)
    for axis, (run, stacks) in zip(axes[0], profiled):
        batches = list(stacks)
        phases = sorted({p for b in batches for p, ms in stacks[b].items() if ms >= 0.005})
        bottom = [0.0] * len(batches)
        for phase in phases:
            heights = [stacks[b].get(phase, 0.0) for b in batches]
            axis.bar([str(b) for b in batches], heights, bottom=bottom, label=phase)
            bottom = [a + h for a, h in zip(bottom, heights)]
        step_ms = run.doc["step_cost"].get("decode_step_ms_by_batch") or {}
        means = [step_ms.get(str(b)) for b in batches]
        axis.plot(
            [str(b) for b in batches], [np.nan if m is None else m for m in means], "k_", markersize=30, label="step"
        )
        axis.set(xlabel="batch size B", ylabel="ms per engine step", title=f"{names[id(run)]}: where a step goes")
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    caption = "Host anatomy per batch size: each engine process's busy time per step by phase (--host-profile)"
    return [(_save(fig, out, "step_anatomy.png"), caption)]
