"""What a person looks at after a run: results.json, curves.csv, returns.png, a table."""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metaopt.plotting import pyplot
from metaopt.training.runs import RunResult

CURVE_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "dormant_actor", "dormant_critic")


def latest_return(episode_return: np.ndarray) -> float:
    """The mean over seeds of the last update in which an episode finished: progress lines stay
    informative on envs whose episodes outlast an update (Freeway: 2500 steps).

    Args:
      episode_return: (seeds, updates), NaN where a seed finished no episode in the update.

    Returns:
      That mean; NaN when no episode finished in any of the updates.
    """
    mean, _ = mean_stderr(np.asarray(episode_return, np.float64))
    finite = mean[np.isfinite(mean)]
    return float(finite[-1]) if finite.size else float("nan")


def mean_stderr(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and standard error (NaN: no episode finished in that update).

    Args:
      x: values, NaN where missing.
      axis: the axis reduced (seeds).

    Returns:
      (mean, standard error); the standard error is 0 where fewer than two values are finite.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=axis)
        n = np.sum(~np.isnan(x), axis=axis)
        se = np.where(n > 1, np.nanstd(x, axis=axis, ddof=1) / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, se


def summary(result: RunResult) -> dict:
    """A run's results.json data: final returns per seed with mean and s.e., throughput, timings, peak
    memory, config.

    Args:
      result: the finished run.

    Returns:
      A JSON-compatible dict (NaN becomes None).
    """
    final = result.final_returns()
    mean, se = mean_stderr(final[None, :].T, axis=0)
    return {
        "label": result.label,
        "env": result.config.env.name,
        "optimizer": result.config.optimizer.name,
        "final_return": [_num(v) for v in final],
        "final_return_mean": _num(float(mean[0])),
        "final_return_stderr": _num(float(se[0])),
        "final_return_definition": "mean return of episodes finished in the last 10% of updates (PPO or A2C)",
        "num_seeds": result.config.num_seeds,
        "num_updates": int(result.metrics["episode_return"].shape[1]),
        "env_steps": result.env_steps,
        "env_steps_per_second": result.env_steps_per_second,
        "run_seconds": result.run_seconds,
        "compile_seconds": result.compile_seconds,
        "peak_rss_mb": result.peak_rss_mb,
        "config": result.config.model_dump(mode="json"),
    }


def _num(v: float):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def write_curves(path: Path, result: RunResult) -> None:
    """curves.csv: per update the env steps, return mean and s.e., each seed's return, and PPO's
    diagnostics averaged over seeds.

    Args:
      path: the CSV file to write.
      result: the finished run.
    """
    ret = result.metrics["episode_return"]
    mean, se = mean_stderr(ret)
    cols = {"update": np.arange(1, ret.shape[1] + 1), "env_steps": result.steps_axis,
            "return_mean": mean, "return_stderr": se}
    for s in range(ret.shape[0]):
        cols[f"return_seed{s}"] = ret[s]
    for name in CURVE_METRICS:
        if name in result.metrics:
            cols[name] = np.nanmean(result.metrics[name], axis=0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in zip(*cols.values()):
            w.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else int(v) for v in row])


def plot_returns(path: Path, results: Sequence[RunResult], title: str) -> None:
    """returns.png: mean ± s.e. of the return against env steps, one line per run.

    Args:
      path: the PNG to write.
      results: the runs to plot.
      title: the figure's title.
    """
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for r in results:
        mean, se = mean_stderr(r.metrics["episode_return"])
        x = r.steps_axis
        ax.plot(x, mean, label=f"{r.label} (n={r.config.num_seeds})", lw=1.6)
        ax.fill_between(x, mean - se, mean + se, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean ± s.e. over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_run(out: Path, results: Sequence[RunResult], comparison: bool | None = None) -> dict:
    """A single run: results.json/curves.csv/returns.png in `out`. A comparison (`compare`,
    even of one optimizer; default: more than one result): one sub-folder per run, plus a
    combined results.json ({"runs": {label: ...}}) and returns.png.

    Args:
      out: the folder (created if missing).
      results: one or more finished runs; a comparison needs distinct labels.
      comparison: the comparison layout; None: when there is more than one result.

    Returns:
      The data written to out/results.json.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not (len(results) > 1 if comparison is None else comparison):
        data = summary(results[0])
        write_curves(out / "curves.csv", results[0])
    else:
        data = {"runs": {}}
        for r in results:
            sub = out / r.label
            sub.mkdir(exist_ok=True)
            data["runs"][r.label] = summary(r)
            (sub / "results.json").write_text(json.dumps(data["runs"][r.label], indent=2))
            write_curves(sub / "curves.csv", r)
    (out / "results.json").write_text(json.dumps(data, indent=2))
    env = results[0].config.env.name
    plot_returns(out / "returns.png", results, f"PPO on {env}")
    return data


def table_rows(results: Sequence[RunResult]) -> list[tuple[str, ...]]:
    """One row of TABLE_HEADER per run: final return mean ± s.e., env steps/s, compile seconds.

    Args:
      results: the finished runs.

    Returns:
      The rows as strings.
    """
    rows = []
    for r in results:
        final = r.final_returns()
        mean, se = mean_stderr(final[:, None], axis=0)
        rows.append((
            r.label, r.config.env.name, str(r.config.num_seeds), f"{r.env_steps // r.config.num_seeds:,}",
            f"{mean[0]:.2f} ± {se[0]:.2f}", f"{r.env_steps_per_second:,.0f}", f"{r.compile_seconds:.1f}",
        ))
    return rows


TABLE_HEADER = ("optimizer", "env", "seeds", "steps/seed", "final return", "env steps/s", "compile s")


def plot_meta_training(path: Path, history: Sequence[dict[str, float]], method: str, envs: Sequence[str]) -> None:
    """Left: what the meta-optimizer sees (ES fitness, or the pipeline's meta-loss).
    Right: the inner agents' return per env.

    Args:
      path: the PNG to write.
      history: one metrics row per iteration (iteration, fitness_* or meta_loss, return_ENV).
      method: "open" (ES) or "optim4rl" (pipeline).
      envs: the tasks' env names.
    """
    plt = pyplot()

    x = [h["iteration"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    if method == "open":
        series = [("fitness_best", "best member"), ("fitness_mean", "population mean")]
        left.set_ylabel("fitness (normalised return, mean over envs)" if len(envs) > 1 else "fitness (return)")
    else:
        series = [("meta_loss", "meta-loss")]
        left.set_ylabel("PPO loss after the inner updates")
    for key, label in series:
        left.plot(x, [h.get(key, np.nan) for h in history], label=label, lw=1.4)
    for env in envs:
        right.plot(x, [h.get(f"return_{env}", np.nan) for h in history], label=env, lw=1.2)
    right.set_ylabel("inner agents' return" + (" (population mean)" if method == "open" else ""))
    for ax in (left, right):
        ax.set_xlabel("generation" if method == "open" else "meta-iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{method} meta-training on {', '.join(envs)}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
