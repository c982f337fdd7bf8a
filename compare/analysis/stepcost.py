"""The step-cost model: what one engine step costs as a function of what is in the batch.

    step_ms = alpha + beta * (tokens in the step) + gamma * (sum of the sequences' contexts) [+ delta * sequences]

fitted by least squares over the steady steps of batch-shape points (steps whose running count and scheduled tokens
equal the point's), with 95% intervals from a bootstrap over steps. The per-sequence term is kept only where it
earns its place: where it lowers the fit's BIC. alpha is the per-step floor, what a step costs with nothing in it;
alpha / step time is the host share at a batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compare.analysis.stats import LEVEL, RESAMPLES, SEED

TERMS = ("alpha", "beta_per_token", "gamma_per_context_token", "delta_per_sequence")


@dataclass(frozen=True)
class StepSample:
    step_ms: float
    tokens: int  # scheduled in the step: decode 1 per sequence, or the prefill chunk's tokens
    context_sum: int  # the sequences' context lengths before the step, summed
    sequences: int  # running in the step
    point: str = ""  # the batch shape it came from


def steady_steps(
    rows: list[dict[str, Any]], batch: int, tokens_per_sequence: int, context: int, point: str = ""
) -> list[StepSample]:
    """The steps of one point in the engine's own step records whose running count is `batch` and whose scheduled
    tokens are `batch` x `tokens_per_sequence`; a step's time is the engine's own (`step_cpu_ms`: vLLM's EngineCore
    wall time around the step) where it gives one, else the gap to the previous record. Decode contexts grow by one
    token a step from `context`."""
    samples, decoded = [], 0
    for previous, row in zip([None, *rows], rows):
        scheduled = row.get("prefill_tokens", 0) + row.get("decode_tokens", 0)
        steady = row.get("running") == batch and scheduled == batch * tokens_per_sequence
        if steady:
            step_ms = row.get("step_cpu_ms")
            if step_ms is None and previous is not None:
                step_ms = (row["t_ns"] - previous["t_ns"]) / 1e6
            if step_ms is not None:
                grown = decoded if tokens_per_sequence == 1 else 0
                samples.append(StepSample(step_ms, scheduled, batch * (context + grown), batch, point))
        if row.get("decode_tokens"):
            decoded += 1
    return samples


def _design(samples: list[StepSample], with_sequences: bool) -> np.ndarray:
    columns = [np.ones(len(samples)), [s.tokens for s in samples], [s.context_sum for s in samples]]
    if with_sequences:
        columns.append([s.sequences for s in samples])
    return np.column_stack(columns).astype(np.float64)


def _bic(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> float:
    residual = float(np.sum((y - x @ coefficients) ** 2))
    n, k = x.shape
    return n * np.log(max(residual, 1e-300) / n) + k * np.log(n)


def fit_step_cost(samples: list[StepSample], resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """The model's coefficients (ms, ms per token, ms per context token, ms per sequence), each with a 95% bootstrap
    interval, R^2 and the residuals' spread; the per-sequence term only where it lowers the BIC."""
    y = np.array([s.step_ms for s in samples], dtype=np.float64)
    fits = {}
    for with_sequences in (False, True):
        x = _design(samples, with_sequences)
        if np.linalg.matrix_rank(x) < x.shape[1]:  # e.g. sequences move with tokens: the term cannot be told apart
            continue
        coefficients = np.linalg.lstsq(x, y, rcond=None)[0]
        fits[with_sequences] = (x, coefficients, _bic(x, y, coefficients))
    if not fits:
        raise ValueError("the steps do not vary enough to fit alpha, beta and gamma apart: add batch shapes")
    with_sequences = True in fits and (False not in fits or fits[True][2] < fits[False][2])
    x, coefficients, _ = fits[with_sequences]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        index = rng.integers(0, len(y), len(y))
        draws.append(np.linalg.lstsq(x[index], y[index], rcond=None)[0])
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(np.array(draws), [tail, 100 - tail], axis=0)
    predicted = x @ coefficients
    total = float(np.sum((y - y.mean()) ** 2))
    terms = TERMS[: x.shape[1]]
    return {
        "model": " + ".join(terms),
        "num_steps": len(y),
        "coefficients": {t: float(c) for t, c in zip(terms, coefficients)},
        "ci95": {t: [float(a), float(b)] for t, a, b in zip(terms, low, high)},
        "r2": 1 - float(np.sum((y - predicted) ** 2)) / total if total else None,
        "residual_ms": {"stdev": float(np.std(y - predicted, ddof=x.shape[1])) if len(y) > x.shape[1] else None},
        "per_sequence_term": "kept (lower BIC)" if with_sequences else "left out (no lower BIC, or not separable)",
    }


def predicted_step_ms(fit: dict[str, Any], batch: int, tokens: int, context_sum: int) -> float:
    c = fit["coefficients"]
    return (
        c["alpha"]
        + c["beta_per_token"] * tokens
        + c["gamma_per_context_token"] * context_sum
        + c.get("delta_per_sequence", 0.0) * batch
    )


def predicted_decode_itl_ms(fit: dict[str, Any], batch: int, context: int, output_tokens: int) -> float:
    """The mean decode step over `output_tokens` steps of `batch` sequences that start at `context` tokens: what the
    ITL of a closed-loop cell at that concurrency should be if every step is a steady decode step."""
    steps = [predicted_step_ms(fit, batch, batch, batch * (context + i)) for i in range(output_tokens)]
    return float(np.mean(steps))


def host_share(fit: dict[str, Any], batch: int, context: int) -> float:
    """alpha over the decode step's predicted time at this batch size: the share of a step nothing in it explains."""
    return fit["coefficients"]["alpha"] / predicted_step_ms(fit, batch, batch, batch * context)


def shape_steps(cell: dict[str, Any]) -> dict[str, Any]:
    """A batch-shape cell's steady steps (its config's concurrency B and prompt tokens C, decode), from its step
    records; says so where the engine keeps none."""
    config = cell["config"]
    batch, context = config["concurrency"], config["prompt_tokens"]
    rows = (cell.get("telemetry") or {}).get("rows") or []
    if not any("decode_tokens" in row for row in rows):
        return {"batch": batch, "context": context, "error": "no step records with scheduled tokens from this engine"}
    samples = steady_steps(rows, batch, 1, context, cell.get("cell_id", ""))
    return {
        "batch": batch,
        "context": context,
        "num_steady_steps": len(samples),
        "step_ms": [round(s.step_ms, 4) for s in samples],
        "context_sums": [s.context_sum for s in samples],
    }


def step_cost_document(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fit over every batch-shape cell's steady steps, with the host share at each batch size; None where the
    run has no batch-shape cell."""
    shapes = [cell["steps"] for cell in cells if "steps" in cell]
    if not shapes:
        return None
    samples = [
        StepSample(ms, shape["batch"], context_sum, shape["batch"], f"B{shape['batch']}-C{shape['context']}")
        for shape in shapes
        if "error" not in shape
        for ms, context_sum in zip(shape["step_ms"], shape["context_sums"])
    ]
    try:
        fit = fit_step_cost(samples)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {"error": str(exc), "num_steps": len(samples)}
    batches = sorted({shape["batch"] for shape in shapes})
    context = min(shape["context"] for shape in shapes)
    fit["host_share_by_batch"] = {str(b): host_share(fit, b, context) for b in batches}
    fit["host_share_context"] = context
    return fit


def step_cost_line(fit: dict[str, Any]) -> str:
    if "error" in fit:
        return f"step cost: not fitted ({fit['error']})"
    c, ci = fit["coefficients"], fit["ci95"]
    shares = ", ".join(f"B={b} {s:.0%}" for b, s in fit["host_share_by_batch"].items())
    return (
        f"step cost over {fit['num_steps']} steady steps: alpha {c['alpha']:.3f} ms [{ci['alpha'][0]:.3f}, "
        f"{ci['alpha'][1]:.3f}], beta {c['beta_per_token'] * 1e3:.3f} us/token, gamma "
        f"{c['gamma_per_context_token'] * 1e6:.2f} ns/context token, R^2 {fit['r2']:.3f}; per-step floor share at "
        f"C={fit['host_share_context']}: {shares}"
    )


def itl_predictions(runs: list) -> list[dict[str, Any]]:
    """Every closed-loop cell of a run without a fit, against the fit of a batch-shapes run of the same engine and
    model: the decode ITL the model predicts at the cell's concurrency, prompt and output length, the cell's
    measured ITL mean, and the relative error (prefills mixed into decode steps under load are what it misses)."""
    fits = {
        (run.doc["engine"]["name"], run.doc["model"]["spec"]): run.doc["step_cost"]
        for run in runs
        if "error" not in (run.doc.get("step_cost") or {"error": None})
    }
    rows = []
    for run in runs:
        fit = fits.get((run.doc["engine"]["name"], run.doc["model"]["spec"]))
        if fit is None or run.doc.get("step_cost"):
            continue
        for cell in run.doc["cells"]:
            config, measured = cell["config"], cell["summary"]["itl_ms"].get("mean")
            if config.get("request_rate") is not None or measured is None or not config.get("prompt_tokens"):
                continue
            output = config["output_tokens"] if isinstance(config["output_tokens"], int) else None
            if output is None:
                continue
            predicted = predicted_decode_itl_ms(fit, config["concurrency"], config["prompt_tokens"], output)
            rows.append(
                {
                    "scenario": run.doc["scenario"]["name"],
                    "cell_id": cell["cell_id"],
                    "predicted_itl_ms": predicted,
                    "measured_itl_ms": measured,
                    "error": (predicted - measured) / measured,
                }
            )
    return rows


def itl_prediction_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'scenario':13} {'cell':16} {'predicted ITL':>14} {'measured':>9} {'error':>7}"]
    for row in rows:
        predicted, measured = row["predicted_itl_ms"], row["measured_itl_ms"]
        lines.append(
            f"{row['scenario']:13} {row['cell_id']:16} {predicted:11.2f} ms {measured:9.2f} {row['error']:+7.0%}"
        )
    return lines if rows else []
