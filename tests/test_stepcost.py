"""The step-cost model (compare/analysis/stepcost.py) on FAKE steps of known cost: the fit gives the coefficients back
inside its intervals, keeps a per-sequence term only where there is one, and the steady steps are picked out of a
cell's step records by running count and scheduled tokens."""

import numpy as np
import pytest

from compare.analysis.stepcost import (
    StepSample,
    fit_step_cost,
    host_share,
    predicted_decode_itl_ms,
    steady_steps,
)

pytestmark = pytest.mark.unit
ALPHA, BETA, GAMMA = 4.0, 0.02, 0.0005  # ms, ms per token, ms per context token


def _fake_steps(delta: float = 0.0, noise_ms: float = 0.05, seed: int = 1) -> list[StepSample]:
    rng = np.random.default_rng(seed)
    samples = []
    for batch in (1, 2, 4, 8, 16):
        for context in (128, 512, 2048):
            for tokens in (batch, 256):  # a decode step, and a prefill chunk of 256 tokens beside the batch
                for _ in range(12):
                    true_ms = ALPHA + BETA * tokens + GAMMA * batch * context + delta * batch
                    samples.append(StepSample(true_ms + rng.normal(0, noise_ms), tokens, batch * context, batch))
    return samples


def test_the_fit_gives_known_coefficients_back_inside_its_intervals():
    fit = fit_step_cost(_fake_steps(), resamples=400)
    for term, true in (("alpha", ALPHA), ("beta_per_token", BETA), ("gamma_per_context_token", GAMMA)):
        low, high = fit["ci95"][term]
        assert low <= true <= high, (term, fit["ci95"][term])
        assert fit["coefficients"][term] == pytest.approx(true, rel=0.05)
    assert fit["r2"] > 0.99 and "delta_per_sequence" not in fit["coefficients"]


def test_a_per_sequence_cost_is_kept_only_where_there_is_one():
    fit = fit_step_cost(_fake_steps(delta=0.3), resamples=400)
    assert fit["coefficients"]["delta_per_sequence"] == pytest.approx(0.3, rel=0.05)
    assert fit["per_sequence_term"].startswith("kept")


def test_the_model_predicts_a_decode_itl_and_the_host_share_from_the_floor():
    fit = fit_step_cost(_fake_steps(), resamples=200)
    # 8 sequences from 512 tokens for 64 steps: 4 + 0.02 * 8 + 0.0005 * 8 * (512 + 31.5) on average
    assert predicted_decode_itl_ms(fit, 8, 512, 64) == pytest.approx(ALPHA + BETA * 8 + GAMMA * 8 * 543.5, rel=0.01)
    assert host_share(fit, 1, 128) > host_share(fit, 16, 2048)  # the floor weighs most on a small batch


def test_steady_steps_are_the_records_that_schedule_exactly_the_points_batch():
    ms = 1_000_000
    rows = [
        {"t_ns": 30 * ms, "prefill_requests": 4, "prefill_tokens": 256, "decode_requests": 0, "decode_tokens": 0},
        {"t_ns": 50 * ms, "prefill_requests": 4, "prefill_tokens": 256, "decode_requests": 0, "decode_tokens": 0},
        {"t_ns": 55 * ms, "prefill_requests": 0, "prefill_tokens": 0, "decode_requests": 4, "decode_tokens": 4},
        {"t_ns": 61 * ms, "prefill_requests": 0, "prefill_tokens": 0, "decode_requests": 4, "decode_tokens": 4},
        {"t_ns": 66 * ms, "prefill_requests": 0, "prefill_tokens": 0, "decode_requests": 3, "decode_tokens": 3},  # 3
        {"t_ns": 72 * ms, "prefill_requests": 1, "prefill_tokens": 64, "decode_requests": 3, "decode_tokens": 3},  # mix
        {"t_ns": 77 * ms, "prefill_requests": 0, "prefill_tokens": 0, "decode_requests": 4, "decode_tokens": 4},
    ]
    samples = steady_steps(rows, batch=4, context=128, released_ns=10 * ms)
    # each step's time runs from the record before it, the first from the admission's resume
    assert [round(s.step_ms, 6) for s in samples] == [20.0, 20.0, 5.0, 6.0, 5.0]
    assert [s.kind for s in samples] == ["prefill", "prefill", "decode", "decode", "decode"]
    assert [s.tokens for s in samples] == [256, 256, 4, 4, 4]
    # prefill: 64 tokens a sequence, the second chunk after 64 computed: 4 x (64 x 64 + 64 x 63 / 2) context pairs;
    # decode: the contexts summed, one token more after each decode step (the mixed step decoded too)
    assert [s.context_sum for s in samples[:2]] == [4 * 64 * 63 // 2, 4 * (64 * 64 + 64 * 63 // 2)]
    assert [s.context_sum for s in samples[2:]] == [4 * 128, 4 * 129, 4 * 132]
    assert all(s.sequences == 4 for s in samples)
    assert steady_steps(rows, batch=4, context=128)[0].step_ms == 20.0  # no resume recorded: the first is lost


def test_steps_that_cannot_separate_the_terms_are_refused():
    same = [StepSample(5.0, 4, 512, 4) for _ in range(10)]
    with pytest.raises(ValueError, match="add batch shapes"):
        fit_step_cost(same)


def test_the_fit_predicts_a_concurrent_cells_itl_and_reports_its_error():
    from types import SimpleNamespace

    from compare.analysis.stepcost import itl_prediction_lines, itl_predictions

    fit = fit_step_cost(_fake_steps(), resamples=100)
    head = {"engine": {"name": "vllm"}, "model": {"spec": "synthetic:tiny-llama3"}}
    shapes = SimpleNamespace(doc={**head, "scenario": {"name": "batch-shapes"}, "step_cost": fit, "cells": []})
    true_itl = ALPHA + BETA * 8 + GAMMA * 8 * (512 + 31.5)  # the fake's decode steps at c=8 from 512 tokens, 64 steps
    measured = true_itl * 1.25  # the FAKE concurrent cell ran 25% slower than steady decode (its prefills)
    cell = {
        "cell_id": "c8-in512",
        "config": {"concurrency": 8, "prompt_tokens": 512, "output_tokens": 64, "request_rate": None},
        "summary": {"itl_ms": {"mean": measured}},
    }
    load = SimpleNamespace(doc={**head, "scenario": {"name": "concurrent"}, "cells": [cell]})
    other_engine = SimpleNamespace(doc={**load.doc, "engine": {"name": "sglang"}})
    (row,) = itl_predictions([shapes, load, other_engine])
    assert row["predicted_itl_ms"] == pytest.approx(true_itl, rel=0.01)
    assert row["error"] == pytest.approx(1 / 1.25 - 1, abs=0.01)
    assert "-20%" in itl_prediction_lines([row])[1]


def test_the_bench_latency_anchor_predicts_one_prefill_step_then_the_decode_steps(tmp_path, capsys):
    from tools.anchors.bench_latency import main, predicted_latency_ms

    fit = {"coefficients": {"alpha": 5.0, "beta_per_token": 0.01, "gamma_per_context_token": 0.0}}
    # B=4 prompts of 128 tokens: one 512-token prefill step (5 + 5.12 ms), then 31 decode steps of 4 tokens (5.04 ms)
    assert predicted_latency_ms(fit, 4, 128, 32) == pytest.approx(10.12 + 31 * 5.04)
    (tmp_path / "run.json").write_text('{"cells": []}')
    assert main([str(tmp_path / "run.json")]) == 2
    assert "no step-cost fit" in capsys.readouterr().err
