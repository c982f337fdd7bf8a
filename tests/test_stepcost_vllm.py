"""The batch-shapes scenario on vLLM CPU: every cell's steady steps are picked from the engine's own step records, and
the run fits the step-cost model over them (compare/analysis/stepcost.py)."""

import json

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.engine


def test_batch_shapes_on_vllm_give_every_cell_its_steady_steps_and_the_run_a_fit(model_cache, tmp_path):
    pytest.importorskip("vllm")
    args = ["--engine", "vllm", "--scenario", "batch-shapes", "--quick", "--input-tokens", "64,256"]
    args += ["--output-tokens", "24", "--engine-arg", "enforce_eager=true", "--out", str(tmp_path)]
    result = run_cli(args, model_cache, ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = tmp_path.glob("vllm_batch-shapes_*.json")
    doc = json.loads(path.read_text())
    for cell in doc["cells"]:
        steps = cell["steps"]
        # B requests admitted together (the scheduler paused while they queue) are prefilled in one step (B x C <=
        # 8192 tokens, the default budget), then decode 24 tokens together: the first comes with the prefill, then 23
        # decode steps, every one with exactly B scheduled
        assert cell["admission"]["together"], cell["admission"]
        assert steps["num_prefill_steps"] == 1 and steps["num_steady_steps"] == 24, (cell["cell_id"], steps)
        assert all(ms > 0 for ms in steps["step_ms"])
        # vLLM's execute time is inside the step's wall time, summed over the cell: each step's wall time is the gap
        # between the harness's receipts of two step records, so a loaded host that handles two records back to back
        # gives one step a few hundredths of a ms and the next one the rest (seen in a full suite: 0.18 ms against
        # an execute of 0.68 ms)
        assert all(e > 0 for e in steps["execute_ms"])
        assert sum(steps["execute_ms"]) <= sum(steps["step_ms"]), cell["cell_id"]
    fit = doc["step_cost"]
    assert fit["num_steps"] == sum(c["steps"]["num_steady_steps"] for c in doc["cells"])
    low, high = fit["ci95"]["alpha"]
    assert 0 < low <= fit["coefficients"]["alpha"] <= high  # a CPU step has a floor
    assert set(fit["host_share_by_batch"]) == {"1", "4", "16"}
    assert all(0 < share < 1 for share in fit["between_steps_share_by_batch"].values())
    assert "step cost over" in result.stdout
