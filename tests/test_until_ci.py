"""`--until-ci` (compare/analysis/precision.py, compare/run/stopping.py): the stopping rule against the sample size
theory gives for a known variance, on drawn series and through the whole harness on the null engine (a fake whose
prefill jitter has a known variance); the cap, and bad rules."""

import json

import numpy as np
import pytest

from compare.analysis.precision import MIN_REQUESTS, parse_rule, percentile_bounds, required_requests
from compare.cli.main import main as compare_main
from engines.base import UsageError
from tests.bounds import near

pytestmark = pytest.mark.unit


def stopping_n(rule, series: np.ndarray) -> int | None:
    """The first n at which the rule is met, checking after every request (as the runner does at most)."""
    for n in range(MIN_REQUESTS, len(series) + 1):
        figure = rule.figure(series[:n])
        if figure is not None and figure["met"]:
            return n
    return None


def test_independent_requests_stop_near_the_sample_size_theory_gives():
    rule = parse_rule("e2e_ms=2%")
    theory = required_requests(sd=10.0, mean=100.0, width=0.02)  # (1.96 x 10 / 2)^2 = 96
    stops = [stopping_n(rule, np.random.default_rng(seed).normal(100, 10, 1000)) for seed in range(40)]
    assert all(0.6 * theory < n < 1.6 * theory for n in stops), stops  # the spread s itself is estimated
    assert 0.9 * theory < np.median(stops) < 1.1 * theory, (np.median(stops), theory)


def test_correlated_requests_need_the_ar1_share_more():
    # AR(1) with phi 0.5: an interval over n correlated requests is as wide as over n (1 - phi) / (1 + phi)
    # independent ones, so the rule must run 3x longer; one that ignored the correlation would stop at 1x
    rule, phi = parse_rule("e2e_ms=2%"), 0.5
    stops = []
    for seed in range(40):
        noise = np.random.default_rng(seed).normal(0, 10 * np.sqrt(1 - phi**2), 3000)
        series = np.empty_like(noise)
        series[0] = noise[0]
        for i in range(1, len(noise)):
            series[i] = phi * series[i - 1] + noise[i]
        stops.append(stopping_n(rule, series + 100))
    ratio = np.median(stops) / required_requests(10.0, 100.0, 0.02)
    assert 2.4 < ratio < 3.6, ratio


def test_the_percentile_interval_covers_the_true_quantile_95_percent_of_the_time():
    covered = 0
    for seed in range(400):
        bounds = percentile_bounds(np.sort(np.random.default_rng(seed).uniform(0, 1, 300)), 0.9)
        covered += bounds is not None and bounds[0] <= 0.9 <= bounds[1]
    assert 0.93 <= covered / 400 <= 0.98, covered


def test_a_percentile_has_no_interval_before_its_ranks_fit_in_the_sample():
    rule, draw = parse_rule("e2e_ms:p99=10%"), np.random.default_rng(0).exponential(10, 1000)
    assert rule.figure(draw[:100]) is None  # p99 of 100: the upper rank is past the last
    assert rule.figure(draw) is not None


@pytest.mark.parametrize(
    "text, names",
    [
        ("e2e_ms", "METRIC=W%"),
        ("e2e=5%", "METRIC=W%"),
        ("e2e_ms=5", "METRIC=W%"),
        ("itl_ms=5%", "ttft_ms, tpot_ms, e2e_ms"),
        ("e2e_ms=0%", "between 0 and 100"),
        ("ttft_ms:p100=5%", "between 0 and 100"),
    ],
)
def test_a_bad_rule_is_a_usage_error_naming_the_fix(text, names):
    with pytest.raises(UsageError, match=names):
        parse_rule(text)


def test_bad_early_stop_flags_exit_2_before_anything_runs(tmp_path, capsys):
    base = ["--engine", "null", "--scenario", "concurrent", "--out", str(tmp_path), "--no-progress"]
    assert compare_main([*base, "--until-ci", "p99=5%"]) == 2
    assert compare_main([*base, "--end-saturated"]) == 2  # closed loop: nothing to saturate
    assert compare_main([*base, "--scenario", "multi-turn", "--until-ci", "e2e_ms=5%"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "--request-rate" in errors[1] and not list(tmp_path.glob("*.json")), errors


def _null_cell(tmp_path, *flags: str) -> dict:
    args = ["--engine", "null", "--scenario", "concurrent", "--concurrency", "4", "--warmups", "0"]
    args += ["--input-tokens", "16", "--output-tokens", "2", "--out", str(tmp_path), "--no-progress", *flags]
    assert compare_main(args) == 0
    (path,) = tmp_path.glob("null_concurrent_*.json")
    (cell,) = json.loads(path.read_text())["cells"]
    return cell


def test_a_null_cell_stops_near_theory_for_its_known_jitter(tmp_path):
    # the fake's E2E: 10 ms + U(0, 20) ms prefill + 10 ms: mean 30 ms, sd 20 / sqrt(12) = 5.77 ms; at 5% theory
    # gives (1.96 x 5.77 / 1.5)^2 = 57 requests (the timer's lateness adds ~1% to the mean)
    cell = _null_cell(tmp_path, "--engine-arg", "prefill_jitter_ms=20", "--until-ci", "e2e_ms=5%")
    stop = cell["stop"]
    assert stop["ended_by"] == "interval" and not stop["cap_ended"] and stop["figure_at_stop"]["met"], stop
    at_stop = stop["figure_at_stop"]["num_requests"]
    near(at_stop / required_requests(20 / 12**0.5, 30.0, 0.05), 1.0, 0.45, "--until-ci stop over theory's n")
    # the requests in flight at the stop ran to their end and count: at most concurrency - 1 more
    assert at_stop <= len(cell["requests"]) <= at_stop + 3 and stop["num_sent"] == len(cell["requests"])
    assert all(r["error"] is None for r in cell["requests"])


def test_the_cap_ends_a_cell_that_never_gets_tight_and_says_so(tmp_path):
    flags = ("--engine-arg", "prefill_jitter_ms=20", "--until-ci", "e2e_ms=0.1%", "--until-ci-max-requests", "40")
    cell = _null_cell(tmp_path, *flags)
    stop = cell["stop"]
    assert stop["ended_by"] == "max_requests" and stop["cap_ended"] and len(cell["requests"]) == 40
    assert stop["figure_at_end"]["relative_half_width"] > 0.001
    assert any("the cap (max_requests) ended the cell" in w for w in cell["warnings"])
