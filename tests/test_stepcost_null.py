"""The batch-shapes scenario end to end on the null engine's FAKE batched steps (engines/null_steps.py), whose true
step cost is alpha + beta x tokens + noise: the run's fit must give alpha and beta back within 5%, and every point's
measured steps must schedule exactly its B sequences, admitted together."""

import json

import pytest

from compare.cli.main import main as compare_main
from tests.bounds import below, near

pytestmark = pytest.mark.unit
ALPHA_MS, BETA_MS = 10.0, 0.02  # the fake's true step cost: 10 ms + 20 us per scheduled token


def _shapes_run(out, model, *extra: str) -> dict:
    args = ["--engine", "null", "--model", str(model), "--scenario", "batch-shapes", "--quick"]
    args += ["--input-tokens", "64,256", "--output-tokens", "16", "--out", str(out), "--no-progress"]
    args += ["--engine-arg", f"step_alpha_ms={ALPHA_MS}", "--engine-arg", f"step_beta_ms={BETA_MS}", *extra]
    assert compare_main(args) == 0
    (path,) = out.glob("null_batch-shapes_*.json")
    return json.loads(path.read_text())


def test_the_fit_recovers_a_fakes_known_step_cost_within_5_percent(tmp_path, config_only_model):
    doc = _shapes_run(tmp_path, config_only_model, "--engine-arg", "step_noise_ms=0.3")
    fit = doc["step_cost"]
    # what the harness adds between the fake's steps (its own loop, the tokens' delivery) lands in alpha: a defect
    # that slowed that path by 0.5 ms a step, or a step time read from the wrong record, would move it past 5%
    near(fit["coefficients"]["alpha"], ALPHA_MS, 0.05 * ALPHA_MS, "fitted alpha (ms) of the fake's 10 ms steps")
    near(fit["coefficients"]["beta_per_token"] * 1e3, BETA_MS * 1e3, 0.05e3 * BETA_MS, "fitted beta (us per token)")
    assert fit["num_prefill_steps"] == 6  # one whole-prompt prefill per point, B x C tokens
    for batch, share in fit["between_steps_share_by_batch"].items():  # the fake's execute time is its whole step
        below(share, 0.05, 0.01, f"share of a B={batch} step outside the fake's execute call")


def test_every_points_steady_steps_schedule_exactly_its_batch_admitted_together(tmp_path, config_only_model):
    doc = _shapes_run(tmp_path, config_only_model, "--engine-arg", "step_chunk_tokens=32")
    for cell in doc["cells"]:
        steps, batch = cell["steps"], cell["config"]["concurrency"]
        assert cell["admission"]["together"] and steps["admitted_together"]
        # admitted in one step: every prefill chunk (32 tokens each) and every decode step but the last holds all B;
        # the first token comes with the prefill's last chunk, then 15 decode steps
        chunks = cell["config"]["prompt_tokens"] // 32
        assert steps["num_prefill_steps"] == chunks and steps["num_steady_steps"] == chunks + 15, cell["cell_id"]
        assert set(steps["tokens"]) == {32 * batch, batch}
        rows = cell["telemetry"]["rows"]
        assert max(r["prefill_requests"] + r["decode_requests"] for r in rows) == batch


def test_batch_shapes_on_an_engine_without_step_records_is_refused_before_anything_runs(
    tmp_path, config_only_model, capsys
):
    args = ["--engine", "null", "--model", str(config_only_model), "--scenario", "batch-shapes", "--quick"]
    assert compare_main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "step_alpha_ms" in capsys.readouterr().err
    http = ["--engine", "vllm", "--model", str(config_only_model), "--scenario", "batch-shapes", "--mode", "http"]
    assert compare_main([*http, "--out", str(tmp_path / "out")]) == 2
    assert "--mode inprocess" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_report_tables_the_fit_draws_it_and_reads_the_host_floor_for_h4(tmp_path, config_only_model):
    from compare.report.command import write_report
    from compare.results.store import load_run

    _shapes_run(tmp_path / "runs", config_only_model)
    (run,) = [load_run(p) for p in (tmp_path / "runs").glob("*.json")]
    written = write_report([run], tmp_path / "report", None)
    text = written.path.read_text()
    assert "## Step cost by batch shape" in text and "floor share of a decode step" in text
    assert (tmp_path / "report" / "step_cost.png").stat().st_size > 10_000


def test_h4_reads_a_host_floor_that_grows_with_the_batch_and_one_that_stays_flat():
    from types import SimpleNamespace

    from compare.report.stepcost_report import host_floor_line

    def run(outside: dict) -> SimpleNamespace:
        fit = {
            "coefficients": {"alpha": 8.0},
            "between_steps_share_by_batch": outside,
            "decode_step_ms_by_batch": {"1": 10.0, "16": 20.0},
        }
        return SimpleNamespace(doc={"engine": {"name": "vllm"}, "step_cost": fit})

    # 10% of 10 ms at B=1, 10% of 20 ms at B=16: 1 ms -> 2 ms of host work a step
    assert "1.00 ms at B=1 -> 2.00 ms at B=16 (x2.00, grows with the batch)" in host_floor_line(
        run({"1": 0.1, "16": 0.1})
    )
    assert "(x1.00, flat)" in host_floor_line(run({"1": 0.1, "16": 0.05}))
    assert host_floor_line(run({"1": None, "16": None})) is None  # no execute time from the engine: no reading


def test_the_host_anatomy_per_batch_splits_each_engine_process_busy_time_per_step_by_phase(tmp_path):
    from types import SimpleNamespace

    from compare.report.stepcost_report import anatomy_figure, phase_ms_per_step

    def cell(batch: int, forward_share: float) -> dict:
        processes = [  # a FAKE 100 ms window over 10 engine steps
            {"role": "engine_core", "wall_s": 0.1, "phases": {"scheduling": {"share": 0.1}, "waiting": {"share": 0.9}}},
            {"role": "worker", "wall_s": 0.1, "phases": {"model_forward": {"share": forward_share}}},
            {"role": "harness", "wall_s": 0.1, "phases": {"harness_loop": {"share": 0.5}}},  # not the engine's
        ]
        rows = [{"t_ns": i, "decode_tokens": batch} for i in range(10)]
        return {"steps": {"batch": batch}, "telemetry": {"rows": rows}, "host_profile": {"processes": processes}}

    fit = {"coefficients": {"alpha": 1.0}, "decode_step_ms_by_batch": {"1": 7.0, "4": 9.0}}
    run = SimpleNamespace(doc={"step_cost": fit, "cells": [cell(1, 0.5), cell(4, 0.7)]})
    stacks = phase_ms_per_step(run)
    # share x 100 ms / 10 steps; waiting and the harness's process are not the step's work
    assert stacks == {
        1: {"engine_core: scheduling": pytest.approx(1.0), "worker: model_forward": pytest.approx(5.0)},
        4: {"engine_core: scheduling": pytest.approx(1.0), "worker: model_forward": pytest.approx(7.0)},
    }
    ((name, _),) = anatomy_figure([run], {id(run): "fake"}, tmp_path)
    assert (tmp_path / name).stat().st_size > 10_000
