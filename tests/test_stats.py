"""The bootstrap intervals: seeded, and they cover the truth about as often as they claim."""

import numpy as np
import pytest

from compare.analysis.stats import Interval, clustered_interval, clustered_percentile, interval, judge, percentile_stat

pytestmark = pytest.mark.unit


def test_the_95_percent_interval_of_a_median_covers_the_true_median_about_95_times_in_100():
    rng = np.random.default_rng(123)
    true_median = np.log(2)  # of an exponential with mean 1
    covered = sum(
        interval(rng.exponential(size=80), percentile_stat(50), seed=trial).contains(true_median)
        for trial in range(200)
    )
    assert 0.88 <= covered / 200 <= 0.99  # percentile bootstrap: close to nominal at n = 80


def test_intervals_are_seeded_and_repeat_exactly():
    data = np.random.default_rng(1).normal(10, 2, size=50)
    assert interval(data, percentile_stat(50)) == interval(data, percentile_stat(50))


def test_a_cluster_bootstrap_is_wider_than_treating_correlated_tokens_as_independent():
    rng = np.random.default_rng(2)
    groups = [
        np.full(100, level) + rng.normal(0, 0.01, 100) for level in rng.normal(10, 1, size=20)
    ]  # per-request level
    pooled = interval(np.concatenate(groups), percentile_stat(50))
    clustered = clustered_interval(groups, 50)
    assert (clustered.high - clustered.low) > 3 * (pooled.high - pooled.low)


@pytest.mark.parametrize(
    "ci, expected",
    [
        (Interval(1.3, 1.2, 1.4), "supported"),
        (Interval(1.0, 0.9, 1.05), "not supported"),
        (Interval(1.1, 1.0, 1.2), "inconclusive"),
    ],
)
def test_a_claim_is_judged_by_where_the_whole_interval_lies(ci, expected):
    assert judge(ci, 1.1) == expected
    assert judge(Interval(1 / ci.value, 1 / ci.high, 1 / ci.low), 1 / 1.1, higher_supports=False) == expected


@pytest.mark.parametrize("q", [50, 99])
def test_the_weighted_cluster_percentile_equals_pooling_the_picked_requests(q):
    rng = np.random.default_rng(3)
    groups = [rng.exponential(size=rng.integers(1, 30)) for _ in range(12)]
    fast = clustered_percentile(groups, q, resamples=20, seed=7)
    picks = np.random.default_rng(7)
    slow = [np.percentile(np.concatenate([groups[i] for i in picks.integers(0, 12, size=12)]), q) for _ in range(20)]
    assert fast == pytest.approx(slow)
