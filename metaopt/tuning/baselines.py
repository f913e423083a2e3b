"""Tuned baselines: a learning-rate sweep of Adam and RMSProp per env on Ray Tune.

Each trial is the same PPO `train` as everywhere (seeds vmapped inside the trial, all trials
on the same seeds), reporting its running mean return after every compiled chunk of updates
so ASHA can stop hopeless learning rates early. The best learning rate per (env, optimizer)
among completed trials goes into the tuned-baselines file that `adam:tuned` /
`rmsprop:tuned` read; all trials go to a CSV, a plot and MLflow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray import tune

from metaopt.config import BaselineSweepConfig, baseline_train_config, read_yaml
from metaopt.distributed.job import connect_ray
from metaopt.plotting import pyplot
from metaopt.tracking.sweeps import record_sweep
from metaopt.training.runs import chunk_size
from metaopt.tuning.sweep import GroupedASHA, cores_for_trial, experiment_root, fit, history, spread
from metaopt.tuning.trial_tasks import baseline_trial
from metaopt.tuning.trials import COMPLETED, best_per_group, write_trials

REPORTED = ("episode_return", "env_steps")


def _describe(config: dict) -> str:
    return f"{config['optimizer']} lr {config['learning_rate']:.3g} on {config['env']}"


@dataclass
class BaselineSweepResult:
    """A finished baseline sweep: its trials, the best per env and optimizer, the folder, the MLflow
    parent run."""

    rows: list[dict[str, Any]]  # one per trial, as in trials.csv
    best: dict[str, dict[str, dict[str, Any]]]  # env -> optimizer -> best completed row
    out: Path
    parent_run_id: str


def _rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        m, c = t["metrics"], t["config"]
        rows.append({
            "trial_id": t["trial_id"], "env": c["env"], "optimizer": c["optimizer"],
            "learning_rate": c["learning_rate"], "status": t["status"],
            "final_return": m.get("final_return", float("nan")), "final_return_se": m.get("final_return_se", float("nan")),
            "last_episode_return": m.get("episode_return", float("nan")), "env_steps": m.get("env_steps", 0),
            "env_steps_per_second": m.get("env_steps_per_second", float("nan")), "seconds": m.get("time_total_s", float("nan")),
            "path": t["path"],
            "seed_returns": [m[f"final_return_seed{i}"] for i in range(sum(k.startswith("final_return_seed") for k in m))],
        })
    return sorted(rows, key=lambda r: (r["env"], r["optimizer"], r["learning_rate"]))


def write_tuned_file(path: Path, best: dict, sweep: BaselineSweepConfig, experiment: str) -> None:
    """Merge into the tuned-baselines file: entries of other envs and optimizers stay.

    Args:
      path: the tuned-baselines YAML (created with its folder if missing).
      best: from `best_per_group`.
      sweep: the sweep (seeds, budget and grid are recorded).
      experiment: the sweep's Tune folder or URI, recorded as `sweep`.
    """
    data = read_yaml(path) if path.is_file() else {}
    today = dt.date.today().isoformat()
    for env, per_opt in best.items():
        for optimizer, r in per_opt.items():
            data.setdefault(env, {})[optimizer] = {
                "learning_rate": float(r["learning_rate"]),
                "final_return": round(float(r["final_return"]), 4),
                "final_return_se": round(float(r["final_return_se"]), 4),
                "seeds": sweep.seeds,
                "total_timesteps": baseline_train_config(sweep, env, optimizer, r["learning_rate"]).agent.total_timesteps,
                "grid": sweep.learning_rates.values,
                "at_grid_edge": r["at_grid_edge"],
                "sweep": _shown(experiment), "date": today,
            }
    header = ("# Tuned baselines: the best learning rate per env and optimizer from a learning-rate sweep\n"
              "# (ray_jobs/tune_baselines.py; final return = mean over seeds of the mean return of episodes\n"
              "# finished in the last 10% of updates). Read by `adam:tuned` / `rmsprop:tuned`.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=True))


def _shown(location: str) -> str:
    """Relative to the working folder when inside it (the tuned file is committed); URIs as given."""
    if "://" in location:
        return location
    try:
        return str(Path(location).absolute().relative_to(Path.cwd()))
    except ValueError:
        return location


def plot_sweep(path: Path, rows: list[dict[str, Any]], best: dict) -> None:
    """Final return (mean ± s.e. over seeds) against learning rate, one panel per env.

    Args:
      path: the PNG to write.
      rows: trial rows (stopped trials drawn as crosses at their last return).
      best: from `best_per_group` (drawn as stars).
    """
    plt = pyplot()

    envs = sorted({r["env"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for optimizer in sorted({r["optimizer"] for r in rows if r["env"] == env}):
            done = [r for r in rows if r["env"] == env and r["optimizer"] == optimizer and r["status"] == COMPLETED]
            lr = np.array([r["learning_rate"] for r in done])
            mean = np.array([r["final_return"] for r in done])
            se = np.array([r["final_return_se"] for r in done])
            line = ax.errorbar(lr, mean, yerr=se, marker="o", capsize=3, label=optimizer)
            stopped = [r for r in rows if r["env"] == env and r["optimizer"] == optimizer and r["status"] != COMPLETED]
            if stopped:
                ax.scatter([r["learning_rate"] for r in stopped], [r["last_episode_return"] for r in stopped],
                           marker="x", color=line[0].get_color(), label=f"{optimizer} (stopped early: last return)")
            if optimizer in best.get(env, {}):
                b = best[env][optimizer]
                ax.scatter([b["learning_rate"]], [b["final_return"]], s=180, marker="*", color=line[0].get_color(), zorder=3)
        ax.set_xscale("log")
        grid = sorted({r["learning_rate"] for r in rows if r["env"] == env})
        ax.set_xticks(grid, [f"{lr:.3g}" for lr in grid])  # the grid's own rates, not log-axis minor labels
        ax.minorticks_off()
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final return")
        ax.set_title(env)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Learning-rate sweep (star: best per optimizer)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_baseline_sweep(sweep: BaselineSweepConfig, out: str | Path, *, fresh: bool = False,
                       address: str | None = None) -> BaselineSweepResult:
    """Run (or resume) a baseline sweep, then write trials.csv, lr_sweep.png and the tuned-baselines
    file and record it all in MLflow.

    Args:
      sweep: the validated sweep.
      out: the output folder.
      fresh: start over instead of resuming a sweep in `out`.
      address: a Ray cluster; None: $RAY_ADDRESS or an embedded local Ray.

    Returns:
      The BaselineSweepResult.
    """
    out = Path(out).resolve()
    connect_ray(address)
    lrs = sweep.learning_rates.values
    scheduler = None
    if sweep.early_stopping.enabled:
        reports = max(_reports(sweep, env, opt) for env in sweep.envs for opt in sweep.optimizers)
        scheduler = GroupedASHA(
            ("env", "optimizer"), time_attr="training_iteration", metric="episode_return", mode="max",
            max_t=reports, grace_period=sweep.early_stopping.grace_period,
            reduction_factor=sweep.early_stopping.reduction_factor,
        )
    trials = fit(
        tune.with_parameters(baseline_trial, sweep_json=sweep.model_dump_json(), cores=cores_for_trial(sweep.resources)),
        {"env": tune.grid_search(sweep.envs), "optimizer": tune.grid_search(sweep.optimizers),
         "learning_rate": tune.grid_search(lrs)},
        out=out, name=sweep.name, config_dump=sweep.model_dump(mode="json"), resources=sweep.resources,
        total_trials=len(sweep.envs) * len(sweep.optimizers) * len(lrs), describe=_describe,
        metric="episode_return", scheduler=scheduler, fresh=fresh, storage=sweep.storage,
    )
    rows = _rows(trials)
    best = best_per_group(rows)
    csv_path, plot_path = out / "trials.csv", out / "lr_sweep.png"
    write_trials(csv_path, rows)
    plot_sweep(plot_path, rows, best)
    experiment = f"{experiment_root(out, sweep.storage)}/{sweep.name}"
    write_tuned_file(sweep.tuned_path, best, sweep, experiment)
    summary = {f"{env}.{opt}.best_learning_rate": r["learning_rate"] for env, d in best.items() for opt, r in d.items()}
    summary.update({f"{env}.{opt}.best_final_return": r["final_return"] for env, d in best.items() for opt, r in d.items()})
    for env in sweep.envs:
        for opt in sweep.optimizers:
            returns = [r["final_return"] for r in rows if r["env"] == env and r["optimizer"] == opt]
            summary[f"{env}.{opt}.spread"] = spread(returns)
    finished = [{
        "trial_id": r["trial_id"], "status": r["status"], "name": f"{r['optimizer']}-{r['env']}-lr{r['learning_rate']:.3g}",
        "params": {"env": r["env"], "optimizer": r["optimizer"], "learning_rate": r["learning_rate"], "seeds": sweep.seeds},
        "metrics": {k: r[k] for k in ("final_return", "final_return_se", "env_steps_per_second") if np.isfinite(r[k])},
        "history": [(h["env_steps"], {"episode_return": h["episode_return"]}) for h in history(r["path"], REPORTED)
                    if "env_steps" in h and "episode_return" in h],
    } for r in rows]
    parent = record_sweep(sweep.tracking, kind="tune-baselines", experiment=experiment,
                          config=sweep.model_dump(mode="json"), summary=summary, trials=finished,
                          artifacts=[csv_path, plot_path, sweep.tuned_path])
    return BaselineSweepResult(rows, best, out, parent)


def _reports(sweep: BaselineSweepConfig, env: str, optimizer: str) -> int:
    """How many times a trial of this env reports: once per compiled chunk of updates."""
    n = baseline_train_config(sweep, env, optimizer, sweep.learning_rates.low).agent.num_updates
    return n // chunk_size(n)
