"""Statistics for RL results over seeds: IQM, bootstrap confidence intervals, probability
of improvement (Agarwal et al., NeurIPS 2021, "Deep RL at the edge of the statistical
precipice"), computed with scipy.stats.

rliable, the reference implementation, cannot be imported with the locked set: it needs
arch < 8, and arch 7.2.0 fails at import with pandas 3.1 (`deprecate_kwarg`). These functions
follow rliable's definitions for one task (IQM = 25%-trimmed mean; percentile bootstrap over
runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

RESAMPLES = 10_000


def iqm(x, axis: int = -1):
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed each side).

    Args:
      x: the values.
      axis: the axis reduced.

    Returns:
      The IQM along `axis`.
    """
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

    Args:
      a: one value per run of the first sample; NaNs are dropped.
      b: one value per run of the second sample; NaNs are dropped.
      statistic: vectorised statistic taking (values, axis).
      confidence: coverage of the interval.
      seed: seed of the resampling.

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
    """P(X > Y) + P(X = Y) / 2 for a random run of each (the Mann-Whitney U statistic / (n m)).

    Args:
      x: one value per run of X; NaNs are dropped.
      y: one value per run of Y; NaNs are dropped.

    Returns:
      The probability, in [0, 1].
    """
    x, y = (np.asarray(v, np.float64) for v in (x, y))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    greater = (x[:, None] > y[None, :]).mean()
    ties = (x[:, None] == y[None, :]).mean()
    return float(greater + 0.5 * ties)


def summarize(x, seed: int = 0) -> dict[str, float | int]:
    """n, mean with its 95% CI, IQM with its 95% CI, standard error, median, min and max.

    Args:
      x: one value per run; non-finite values are counted, then dropped.
      seed: seed of the bootstrap.

    Returns:
      {n, nonfinite, mean, mean_ci, stderr, iqm, iqm_ci, median, min, max}; NaN where undefined.
    """
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


# ------------------------------------------------------------------ several tasks (envs)


def _clean(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v[np.isfinite(v)]


def _quantiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap draws, leaving out draws that are not finite (a
    normaliser resampled to a non-positive IQM); NaNs when none is."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))


def _normaliser_draws(reference: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample indices of a task's reference runs and the IQM of each resample (one per row); a
    reference with a single run cannot be resampled and stays fixed."""
    idx = rng.integers(0, reference.size, (resamples, reference.size))
    if reference.size < 2:
        return idx, np.full(resamples, float(iqm(reference)))
    norm = iqm(reference[idx], axis=-1)
    # A resample whose IQM is not positive cannot normalise (a ratio to 0 or below says nothing):
    # that draw is left out of the interval (NaN), as the point estimate needs a positive IQM too.
    return idx, np.where(norm > 0, norm, np.nan)


def stratified_bootstrap_ci(scores: dict[str, np.ndarray], statistic: Callable = iqm, confidence: float = 0.95,
                            seed: int = 0, resamples: int = RESAMPLES,
                            normalisers: dict[str, np.ndarray] | None = None) -> tuple[float, float, float]:
    """An aggregate over tasks with rliable's stratified percentile bootstrap: runs are
    resampled with replacement within each task, the statistic is taken over all runs of
    all tasks pooled (rliable's aggregate IQM).

    Args:
      scores: task -> one score per run (raw when `normalisers` is given, else normalised); NaNs dropped.
      statistic: vectorised statistic taking (values, axis).
      confidence: coverage of the interval.
      seed: seed of the resampling.
      resamples: bootstrap resamples.
      normalisers: task -> the reference's raw runs: each task's scores are divided by the IQM of
        the reference's runs, which are resampled in the same bootstrap (the normaliser's noise is
        in the interval; a single run stays fixed). None: the scores are already normalised.

    Returns:
      (point estimate, low, high); NaNs where a task has fewer than two runs.
    """
    names = list(scores)
    tasks = [_clean(scores[t]) for t in names]
    refs = [_clean(normalisers[t]) for t in names] if normalisers is not None else None
    if not tasks or any(t.size == 0 for t in tasks) or (refs and any(r.size == 0 for r in refs)):
        return float("nan"), float("nan"), float("nan")
    scale = [float(iqm(r)) for r in refs] if refs else [1.0] * len(tasks)
    point = float(statistic(np.concatenate([t / c for t, c in zip(tasks, scale)]), axis=-1))
    if any(t.size < 2 for t in tasks):
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    parts = []
    for i, t in enumerate(tasks):
        drawn = t[rng.integers(0, t.size, (resamples, t.size))]
        parts.append(drawn / _normaliser_draws(refs[i], rng, resamples)[1][:, None] if refs else drawn)
    values = statistic(np.concatenate(parts, axis=1), axis=-1)
    return (point, *_quantiles(values, confidence))


def stratified_difference_ci(x: dict[str, np.ndarray], y: dict[str, np.ndarray], statistic: Callable = iqm,
                             confidence: float = 0.95, seed: int = 0, resamples: int = RESAMPLES,
                             normalisers: dict[str, np.ndarray] | None = None,
                             y_is_reference: bool = False) -> tuple[float, float, float]:
    """statistic(X) - statistic(Y) of two aggregates over the tasks both ran, each the statistic
    of its runs pooled over tasks, with a stratified bootstrap CI (both resampled within each
    task, independently): a CI that excludes 0 says the aggregates differ.

    Args:
      x: task -> one score per run of X (raw when `normalisers` is given); only tasks in both
        count; NaNs are dropped.
      y: task -> one score per run of Y.
      statistic: vectorised statistic taking (values, axis).
      confidence: coverage of the interval.
      seed: seed of the resampling.
      resamples: bootstrap resamples.
      normalisers: task -> the reference's raw runs, resampled in the same bootstrap; both X and Y
        are divided by each draw's reference IQM. None: the scores are already normalised.
      y_is_reference: Y's runs are the reference's own: one draw serves as Y and as normaliser.

    Returns:
      (difference, low, high); NaNs where a task has no run, CI NaNs where one has a single run.
    """
    names = [t for t in x if t in y]
    pairs = [(_clean(x[t]), _clean(y[t])) for t in names]
    refs = [_clean(normalisers[t]) for t in names] if normalisers is not None else None
    if not pairs or any(a.size == 0 or b.size == 0 for a, b in pairs) or (refs and any(r.size == 0 for r in refs)):
        return float("nan"), float("nan"), float("nan")
    scale = [float(iqm(r)) for r in refs] if refs else [1.0] * len(pairs)
    point = float(statistic(np.concatenate([a / c for (a, _), c in zip(pairs, scale)]), axis=-1)
                  - statistic(np.concatenate([b / c for (_, b), c in zip(pairs, scale)]), axis=-1))
    if any(a.size < 2 or b.size < 2 for a, b in pairs):
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i, (a, b) in enumerate(pairs):
        da = a[rng.integers(0, a.size, (resamples, a.size))]
        if refs:
            idx, norm = _normaliser_draws(refs[i], rng, resamples)
            db = refs[i][idx] if y_is_reference else b[rng.integers(0, b.size, (resamples, b.size))]
            da, db = da / norm[:, None], db / norm[:, None]
        else:
            db = b[rng.integers(0, b.size, (resamples, b.size))]
        xs.append(da)
        ys.append(db)
    values = statistic(np.concatenate(xs, axis=1), axis=-1) - statistic(np.concatenate(ys, axis=1), axis=-1)
    return (point, *_quantiles(values, confidence))


def aggregate_probability_of_improvement(x: dict[str, np.ndarray], y: dict[str, np.ndarray], confidence: float = 0.95,
                                         seed: int = 0, resamples: int = 2_000) -> tuple[float, float, float]:
    """rliable's P(X > Y): the mean over tasks of the probability that a run of X beats a
    run of Y on that task, with a stratified bootstrap CI (both samples resampled per task).

    Args:
      x: task -> one value per run of X; only tasks in both `x` and `y` count; NaNs are dropped.
      y: task -> one value per run of Y.
      confidence: coverage of the interval.
      seed: seed of the resampling.
      resamples: bootstrap resamples.

    Returns:
      (probability, low, high).
    """
    tasks = [t for t in x if t in y]
    pairs = [(np.asarray(x[t], np.float64), np.asarray(y[t], np.float64)) for t in tasks]
    pairs = [(a[np.isfinite(a)], b[np.isfinite(b)]) for a, b in pairs]
    if not pairs or any(a.size == 0 or b.size == 0 for a, b in pairs):
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([probability_of_improvement(a, b) for a, b in pairs]))
    rng = np.random.default_rng(seed)
    draws = np.zeros(resamples)
    for a, b in pairs:
        ra = a[rng.integers(0, a.size, (resamples, a.size))]
        rb = b[rng.integers(0, b.size, (resamples, b.size))]
        greater = (ra[:, :, None] > rb[:, None, :]).mean(axis=(1, 2))
        ties = (ra[:, :, None] == rb[:, None, :]).mean(axis=(1, 2))
        draws += (greater + 0.5 * ties) / len(pairs)
    alpha = (1.0 - confidence) / 2.0
    return point, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1.0 - alpha))


def performance_profile(scores: dict[str, np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """The fraction of all runs (pooled over tasks) whose score exceeds each threshold
    (rliable's run-score distribution).

    Args:
      scores: task -> one score per run; NaNs are dropped.
      thresholds: 1-D thresholds.

    Returns:
      One fraction per threshold.
    """
    pooled = np.concatenate([np.asarray(v, np.float64) for v in scores.values()])
    pooled = pooled[np.isfinite(pooled)]
    return (pooled[None, :] > np.asarray(thresholds)[:, None]).mean(axis=1)


def normalise(scores: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Scores divided by the reference runs' IQM on the same task (tuned Adam = 1.0).

    Args:
      scores: one score per run.
      reference: the reference optimizer's runs on the same task; NaNs are dropped.

    Returns:
      (normalised scores, the reference IQM); NaNs where the reference IQM is not positive,
      since a ratio to a non-positive score says nothing.
    """
    ref = float(iqm(np.asarray(reference, np.float64)[np.isfinite(reference)]))
    scores = np.asarray(scores, np.float64)
    if not np.isfinite(ref) or ref <= 0:
        return np.full_like(scores, np.nan), ref
    return scores / ref, ref
