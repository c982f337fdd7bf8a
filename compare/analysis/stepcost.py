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
    step_ms: float  # wall time from the previous step record (or the admission's resume) to this one
    tokens: int  # scheduled in the step: one per decoding sequence, or the prefill chunks' tokens
    context_sum: int  # over the step's new tokens, the tokens before each (decode: the sequences' contexts summed)
    sequences: int  # scheduled in the step
    point: str = ""  # the batch shape it came from
    execute_ms: float | None = None  # the engine's own time around the model's execution, where it gives one
    kind: str = "decode"  # or "prefill"


def steady_steps(
    rows: list[dict[str, Any]], batch: int, context: int, released_ns: int | None = None, point: str = ""
) -> list[StepSample]:
    """The steps of one point in the engine's own step records that schedule exactly its `batch` sequences, all
    decoding (one token each) or all prefilling (equal chunks). A step's time is the wall time since the record
    before it, or since the admission's resume (`released_ns`) for the first: what the step took as the harness sees
    it, host work between the engine's executions included. The engine's execute time rides along where it has one
    (vLLM: `execute_ms`, `step_cpu_ms` in older results: EngineCore's monotonic time around the forward pass)."""
    samples, prefilled, decoded, previous_ns = [], 0, 0, released_ns
    for row in rows:
        prefill_requests, decode_requests = row.get("prefill_requests", 0), row.get("decode_requests", 0)
        prefill_tokens, decode_tokens = row.get("prefill_tokens", 0), row.get("decode_tokens", 0)
        sample = None
        if previous_ns is not None and decode_requests == batch == decode_tokens and not prefill_requests:
            sample = ("decode", batch, batch * (context + decoded))
        elif previous_ns is not None and prefill_requests == batch and not decode_requests and prefill_tokens:
            chunk, before = prefill_tokens / batch, prefilled / batch  # admitted together: equal chunks, in phase
            sample = ("prefill", prefill_tokens, round(prefill_tokens * before + batch * chunk * (chunk - 1) / 2))
        if sample is not None:
            kind, tokens, context_sum = sample
            execute_ms = row.get("execute_ms", row.get("step_cpu_ms"))
            step_ms = (row["t_ns"] - previous_ns) / 1e6
            samples.append(StepSample(step_ms, tokens, context_sum, batch, point, execute_ms, kind))
        prefilled += prefill_tokens
        decoded += 1 if decode_tokens else 0
        previous_ns = row["t_ns"]
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
    """A batch-shape cell's steady steps (its config's concurrency B and prompt tokens C; decode steps and prefill
    chunks), from its step records; says so where the engine kept none or the requests were not admitted together."""
    config, admission = cell["config"], cell.get("admission") or {}
    batch, context = config["concurrency"], config["prompt_tokens"]
    head = {"batch": batch, "context": context, "admitted_together": bool(admission.get("together"))}
    rows = (cell.get("telemetry") or {}).get("rows") or []
    if not any("decode_tokens" in row for row in rows):
        return {**head, "error": "no step records with scheduled tokens from this engine"}
    samples = steady_steps(rows, batch, context, admission.get("released_ns"), cell.get("cell_id", ""))
    return {
        **head,
        "num_steady_steps": len(samples),
        "num_prefill_steps": sum(s.kind == "prefill" for s in samples),
        "step_ms": [round(s.step_ms, 4) for s in samples],
        "execute_ms": [None if s.execute_ms is None else round(s.execute_ms, 4) for s in samples],
        "tokens": [s.tokens for s in samples],
        "context_sums": [s.context_sum for s in samples],
    }


def shape_samples(shape: dict[str, Any]) -> list[StepSample]:
    batch, point = shape["batch"], f"B{shape['batch']}-C{shape['context']}"
    return [
        StepSample(ms, tokens, context_sum, batch, point, execute_ms, "decode" if tokens == batch else "prefill")
        for ms, execute_ms, tokens, context_sum in zip(
            shape["step_ms"], shape["execute_ms"], shape["tokens"], shape["context_sums"]
        )
    ]


def between_steps_share(samples: list[StepSample]) -> float | None:
    """Of the decode steps' wall time, the share outside the engine's execute call: scheduling, output processing and
    handing the outputs over (measured, not fitted); None where the engine gives no execute time."""
    timed = [s for s in samples if s.kind == "decode" and s.execute_ms is not None]
    total = sum(s.step_ms for s in timed)
    return sum(s.step_ms - s.execute_ms for s in timed) / total if total else None


def step_cost_document(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fit over every batch-shape cell's steady steps, with the host share at each batch size (from the fit's
    floor, and measured outside the engine's execute call); None where the run has no batch-shape cell."""
    shapes = [cell["steps"] for cell in cells if "steps" in cell]
    if not shapes:
        return None
    samples = [sample for shape in shapes if "error" not in shape for sample in shape_samples(shape)]
    try:
        fit = fit_step_cost(samples)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {"error": str(exc), "num_steps": len(samples)}
    batches = sorted({shape["batch"] for shape in shapes})
    context = min(shape["context"] for shape in shapes)
    fit["num_prefill_steps"] = sum(s.kind == "prefill" for s in samples)
    fit["host_share_by_batch"] = {str(b): host_share(fit, b, context) for b in batches}
    fit["host_share_context"] = context
    fit["between_steps_share_by_batch"] = {
        str(b): between_steps_share([s for s in samples if s.sequences == b]) for b in batches
    }
    decode_ms = {b: [s.step_ms for s in samples if s.sequences == b and s.kind == "decode"] for b in batches}
    fit["decode_step_ms_by_batch"] = {str(b): float(np.mean(ms)) if ms else None for b, ms in decode_ms.items()}
    return fit


def step_cost_line(fit: dict[str, Any]) -> str:
    if "error" in fit:
        return f"step cost: not fitted ({fit['error']})"
    c, ci = fit["coefficients"], fit["ci95"]
    shares = ", ".join(f"B={b} {s:.0%}" for b, s in fit["host_share_by_batch"].items())
    outside = ", ".join(
        f"B={b} {s:.0%}" for b, s in fit.get("between_steps_share_by_batch", {}).items() if s is not None
    )
    return (
        f"step cost over {fit['num_steps']} steady steps ({fit.get('num_prefill_steps', 0)} prefill): alpha "
        f"{c['alpha']:.3f} ms [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], beta {c['beta_per_token'] * 1e3:.3f} "
        f"us/token, gamma {c['gamma_per_context_token'] * 1e6:.2f} ns/context token, R^2 {fit['r2']:.3f}; "
        f"per-step floor share at C={fit['host_share_context']}: {shares}"
        + (f"; outside the engine's execute call: {outside}" if outside else "")
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
