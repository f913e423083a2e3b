"""RL statistics over seeds: IQM, bootstrap CIs (with rough coverage), probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest

from metaopt.evaluation import stats


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([100.0, 1, 2, 3, 4, 5, 6, -50])  # sorted: -50 1 2 3 4 5 6 100 -> middle 2..5
    assert stats.iqm(x) == pytest.approx(3.5)
    assert stats.iqm(np.arange(1.0, 5.0)) == pytest.approx(2.5)


def test_bootstrap_ci_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        x = rng.normal(10.0, 3.0, 16)
        lo, hi = stats.bootstrap_ci(x, seed=i)
        assert lo < stats.iqm(x) < hi
        hits += lo <= 10.0 <= hi
    assert 0.85 <= hits / 200 <= 0.99  # percentile bootstrap at n=16 under-covers a little


def test_summary_drops_nan_and_counts_it():
    s = stats.summarize([1.0, 2.0, np.nan, 3.0, 4.0])
    assert s["n"] == 4 and s["nonfinite"] == 1 and s["mean"] == pytest.approx(2.5)
    assert s["mean_ci"][0] < 2.5 < s["mean_ci"][1]


def test_difference_and_probability_of_improvement():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 32), rng.normal(3, 1, 32)
    diff, lo, hi = stats.difference_ci(a, b)
    assert 2.0 < lo < diff < hi < 4.0
    assert stats.probability_of_improvement(b, a) > 0.95
    assert stats.probability_of_improvement(a, a) == pytest.approx(0.5)
    same, lo, hi = stats.difference_ci(a, a + rng.normal(0, 0.01, 32))
    assert lo < 0 < hi  # no difference: the CI straddles zero
