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
        # B requests decode 24 tokens together: 23 decode steps after the prefill, all with B running (one may be
        # lost where a request is admitted a step late)
        assert steps["num_steady_steps"] >= 21, (cell["cell_id"], steps["num_steady_steps"])
        assert all(ms > 0 for ms in steps["step_ms"])
    fit = doc["step_cost"]
    assert fit["num_steps"] == sum(c["steps"]["num_steady_steps"] for c in doc["cells"])
    low, high = fit["ci95"]["alpha"]
    assert 0 < low <= fit["coefficients"]["alpha"] <= high  # a CPU step has a floor
    assert set(fit["host_share_by_batch"]) == {"1", "4", "16"}
    assert "step cost over" in result.stdout
