"""Steady windows (compare/analysis/steady.py): known answers from the null engine (a fake) with a programmed
warm-up and a programmed overload, stationary series that must keep their head, and a FAKE cell whose steady
throughput is known exactly."""

import json

import numpy as np
import pytest

from compare.analysis.steady import steady_window, warmup_requests
from compare.cli.main import main as compare_main
from compare.results.records import RequestRecord
from tests.bounds import below, near

pytestmark = pytest.mark.unit
MS = 1_000_000


def _null_cell(tmp_path, *flags: str) -> list[dict]:
    args = ["--engine", "null", "--scenario", "concurrent", "--concurrency", "4", "--warmups", "0"]
    args += ["--output-tokens", "32", "--engine-arg", "interval_ms=2", "--out", str(tmp_path), "--no-progress", *flags]
    assert compare_main(args) == 0
    (path,) = tmp_path.glob("null_concurrent_*.json")
    return json.loads(path.read_text())["cells"]


def test_a_fakes_first_k_slow_requests_are_found_as_the_warm_up(tmp_path):
    (cell,) = _null_cell(tmp_path, "--num-requests", "60", "--engine-arg", "slow_first_requests=12")
    steady = cell["steady"]
    assert steady["verdict"] == "steady" and abs(steady["warmup_requests"] - 12) <= 2, steady
    # the 12 slow requests (3x the interval) are out, and with them most of the whole cell's p99 (a third of it left)
    ratio = steady["e2e_ms"]["p99"] / cell["summary"]["e2e_ms"]["p99"]
    below(ratio, 0.5, 1 / 3, "steady E2E p99 over the whole cell's, 12 of 60 requests 3x slower")


@pytest.mark.parametrize("draw", ["normal", "lognormal", "exponential"])
def test_a_stationary_series_keeps_its_head_in_95_of_100_seeds(draw):
    kept = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        series = {"normal": rng.normal(100, 5, 200), "lognormal": rng.lognormal(4.6, 0.3, 60)}.get(
            draw, rng.exponential(10, 40) + 50
        )
        cut, unsettled = warmup_requests(list(series))
        kept += cut == 0 and not unsettled
    assert kept >= 95


def test_an_open_loop_rate_over_capacity_has_no_steady_state_and_one_under_it_has(tmp_path):
    # the fake serves 4 at a time, 64 ms each: 62.5 req/s; 100 req/s is 1.6x over, 31 req/s 0.5x under
    flags = ["--num-requests", "100", "--request-rate", "31,100", "--engine-arg", "capacity=4"]
    under, over = _null_cell(tmp_path, *flags)
    assert under["steady"]["verdict"] == "steady", under["steady"]
    assert over["steady"]["verdict"] == "no steady state" and "rises" in over["steady"]["why"]


def test_the_windows_throughput_counts_the_tokens_received_inside_it():
    # FAKE closed loop at 2: request i sent at 100 i ms, one token every 10 ms for 200 ms (20 tokens); the last send
    # is at 1100 ms, so the window is [0, 1100] ms and holds every token received by then
    records = [
        RequestRecord(
            f"r{i}",
            8,
            20,
            sent_ns=100 * i * MS,
            end_ns=200 * MS,
            chunk_ns=[10 * MS * (k + 1) for k in range(20)],
            chunk_tokens=[1] * 20,
            output_tokens=20,
        )
        for i in range(12)
    ]
    steady = steady_window(records)
    tokens = sum(1 for r in records for t in r.chunk_ns if r.sent_ns + t <= 1100 * MS)
    assert steady["window_ms"] == [0, 1100] and steady["output_tok_per_s"] == pytest.approx(tokens / 1.1)
    assert steady["num_requests"] == 10  # the two sent at 1000 and 1100 ms end after the last send


def test_vs_and_the_report_compare_steady_windows_where_both_cells_have_one_and_say_so(tmp_path):
    from compare.analysis.vs import compare_runs, vs_lines
    from compare.results.store import load_run

    _null_cell(tmp_path / "warm", "--num-requests", "60", "--engine-arg", "slow_first_requests=12")
    _null_cell(tmp_path / "flat", "--num-requests", "60")
    (a,), (b,) = ([load_run(p) for p in (tmp_path / side).glob("*.json")] for side in ("warm", "flat"))
    rows = {row.metric: row for row in compare_runs(a, b)}
    # the whole cells differ by the warm-up's 12 slow requests (E2E p99 3x); their steady windows do not
    assert all(row.basis == "steady" for row in rows.values()), [r.doc["cells"][0]["steady"] for r in (a, b)]
    whole = b.doc["cells"][0]["summary"]["e2e_ms"]["p99"] / a.doc["cells"][0]["summary"]["e2e_ms"]["p99"]
    below(whole, 0.5, 1 / 3, "whole-cell E2E p99, flat run over warm run")
    near(rows["E2E p99"].ratio.value, 1.0, 0.25, "steady E2E p99, flat run over warm run")
    assert any(line.startswith("[s]: both cells' steady windows") for line in vs_lines(a, b, list(rows.values())))
    # the report's side-by-side table reads the same windows, and says so
    from compare.analysis.runsets import scenario_tables
    from compare.report.markdown import tables_section

    (table,) = scenario_tables([a, b], {id(a): "warm", id(b): "flat"})
    assert table.steady == {"c4-in512"}
    assert any("(steady windows: warm-up and drain cut off in every run)" in line for line in tables_section([table]))
