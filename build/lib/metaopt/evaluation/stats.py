"""Statistics for RL results over seeds: IQM, bootstrap confidence intervals, probability
of improvement (Agarwal et al., NeurIPS 2021, "Deep RL at the edge of the statistical
precipice"), computed with scipy.stats.

rliable, the reference implementation, cannot be imported with the locked set: it needs
arch < 8, and arch 7.2.0 fails at import with pandas 3.1 (`deprecate_kwarg`). These functions
follow rliable's definitions for one task (IQM = 25%-trimmed mean; percentile bootstrap over
runs).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

RESAMPLES = 10_000


def iqm(x, axis: int = -1):
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed each side)."""
    return stats.trim_mean(np.asarray(x, np.float64), 0.25, axis=axis)


def _mean(x, axis: int = -1):
    return np.mean(x, axis=axis)


def bootstrap_ci(x, statistic: Callable = iqm, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of `statistic` over the values in `x`.

    Args:
      x: one value per run (seed); NaNs are dropped.
      statistic: vectorised statistic taking (values, axis).
      confidence: coverage of the interval.
      seed: seed of the resampling.

    Returns:
      (low, high); (nan, nan) with fewer than two values.
    """
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    res = stats.bootstrap((x,), statistic, n_resamples=RESAMPLES, confidence_level=confidence, method="percentile",
                          vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def difference_ci(a, b, statistic: Callable = _mean, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """statistic(b) - statistic(a) for two independent samples, with a percentile-bootstrap CI.

    Returns:
      (difference, low, high).
    """
    a, b = (np.asarray(v, np.float64) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]

    def diff(x, y, axis=-1):
        return statistic(y, axis=axis) - statistic(x, axis=axis)

    res = stats.bootstrap((a, b), diff, n_resamples=RESAMPLES, confidence_level=confidence, method="percentile",
                          vectorized=True, rng=np.random.default_rng(seed))
    return float(diff(a, b)), float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + P(X = Y) / 2 for a random run of each (the Mann-Whitney U statistic / (n m))."""
    x, y = (np.asarray(v, np.float64) for v in (x, y))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    greater = (x[:, None] > y[None, :]).mean()
    ties = (x[:, None] == y[None, :]).mean()
    return float(greater + 0.5 * ties)


def summarize(x, seed: int = 0) -> dict[str, float | int]:
    """n, mean with its 95% CI, IQM with its 95% CI, standard error, median, min and max."""
    x = np.asarray(x, np.float64)
    finite = x[np.isfinite(x)]
    mean_lo, mean_hi = bootstrap_ci(finite, _mean, seed=seed)
    iqm_lo, iqm_hi = bootstrap_ci(finite, iqm, seed=seed)
    n = int(finite.size)
    return {
        "n": n, "nonfinite": int(x.size - n),
        "mean": float(finite.mean()) if n else float("nan"), "mean_ci": [mean_lo, mean_hi],
        "stderr": float(finite.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "iqm": float(iqm(finite)) if n else float("nan"), "iqm_ci": [iqm_lo, iqm_hi],
        "median": float(np.median(finite)) if n else float("nan"),
        "min": float(finite.min()) if n else float("nan"), "max": float(finite.max()) if n else float("nan"),
    }
