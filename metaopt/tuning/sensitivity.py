"""Meta-hyperparameter sensitivity: a Ray Tune grid over a meta-training config.

Each trial meta-trains (single process, checkpointing into its own trial folder, so a
restored sweep continues an interrupted meta-training where it stopped), then trains fresh
agents with the result on evaluation seeds and reports their final return. Outputs:
heatmaps of final return over the first two grid axes (panels for a third), the spread
(best / worst final return) as the "tuning shift" figure, next to the learning-rate spread
of tuned baselines when a baseline sweep's CSV is given, a CSV, and MLflow records.

With `results` set, every finished trial also leaves a small record there (its grid point,
meta-seed, config hash, per-seed final returns, compute seconds, code version) and its trained
meta-parameters: a later sweep, on another machine or in another session, reports a trial whose
record matches its config instead of running it again.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from metaopt.config import SensitivitySweepConfig, meta_config_at, sensitivity_base_config
from metaopt.distributed.job import connect_ray
from metaopt.plotting import pyplot
from metaopt.tracking.sweeps import record_sweep
from metaopt.tuning.sweep import COMPLETED, cores_for_trial, experiment_root, fit, history, spread
from metaopt.tuning.trial_records import SEED_KEY
from metaopt.tuning.trial_tasks import sensitivity_trial
from metaopt.tuning.trials import read_trials


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


@dataclass
class SensitivitySweepResult:
    """A finished sensitivity sweep: its trials, the grid cells, the overall spread, the folder, the
    MLflow parent run."""

    rows: list[dict[str, Any]]
    cells: list[dict[str, Any]]  # one per grid point: mean final return over meta seeds
    spread: float
    out: Path
    parent_run_id: str


def _cells(sweep: SensitivitySweepConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for values in itertools.product(*sweep.grid.values()):
        point = dict(zip(sweep.grid, values))
        done = [r["final_return"] for r in rows
                if r["status"] == COMPLETED and all(r[k] == v for k, v in point.items())]
        with np.errstate(all="ignore"):
            cells.append({**point, "final_return": float(np.mean(done)) if done else float("nan"), "runs": len(done)})
    return cells


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_heatmaps(path: Path, sweep: SensitivitySweepConfig, cells: list[dict[str, Any]]) -> None:
    """heatmap.png: final return over the first two grid axes, one panel per value of a third.

    Args:
      path: the PNG to write.
      sweep: the sweep (its grid's axes and values).
      cells: one per grid point, with `final_return`.
    """
    plt = pyplot()

    keys = list(sweep.grid)
    rows_key, cols_key = keys[0], keys[1]
    panels = sweep.grid[keys[2]] if len(keys) == 3 else [None]
    finite = [c["final_return"] for c in cells if np.isfinite(c["final_return"])]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + 1.3 * len(sweep.grid[cols_key]) * len(panels) + 1.5,
                                                      1.5 + 0.8 * len(sweep.grid[rows_key])), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        grid = np.full((len(sweep.grid[rows_key]), len(sweep.grid[cols_key])), np.nan)
        for c in cells:
            if panel is None or c[keys[2]] == panel:
                grid[sweep.grid[rows_key].index(c[rows_key]), sweep.grid[cols_key].index(c[cols_key])] = c["final_return"]
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "-" if np.isnan(v) else f"{v:.3g}", ha="center", va="center",
                    color="white" if np.isnan(v) or v < (vmin + vmax) / 2 else "black", fontsize=9)
        ax.set_xticks(range(grid.shape[1]), [_label(v) for v in sweep.grid[cols_key]])
        ax.set_yticks(range(grid.shape[0]), [_label(v) for v in sweep.grid[rows_key]])
        ax.set_xlabel(cols_key)
        ax.set_ylabel(rows_key)
        if panel is not None:
            ax.set_title(f"{keys[2]} = {_label(panel)}")
    fig.colorbar(image, ax=axes[0].tolist(), label="final return (fresh agents)")
    fig.suptitle(f"{sweep.name}: final return over the grid")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def baseline_spreads(csv_path: str | Path, envs: list[str]) -> dict[str, float]:
    """Per optimizer: best / worst final return over its learning-rate grid, on these envs
    (the mean over envs of each env's spread).

    Args:
      csv_path: a baseline sweep's trials.csv.
      envs: the envs to average over.

    Returns:
      "OPTIMIZER (learning rate)" -> mean spread; optimizers without a finite spread are left out.
    """
    rows = [r for r in read_trials(csv_path) if r["env"] in envs and r["status"] == COMPLETED]
    out = {}
    for optimizer in sorted({r["optimizer"] for r in rows}):
        per_env = [spread([r["final_return"] for r in rows if r["optimizer"] == optimizer and r["env"] == env])
                   for env in envs]
        per_env = [s for s in per_env if not np.isnan(s)]
        if per_env:
            out[f"{optimizer} (learning rate)"] = float(np.mean(per_env))
    return out


def plot_tuning_shift(path: Path, spreads: dict[str, float], title: str) -> None:
    """Bars of best / worst final return: how much each search matters.

    Args:
      path: the PNG to write.
      spreads: bar name -> best / worst ratio (inf and NaN are labelled).
      title: the figure's title.
    """
    plt = pyplot()

    names = list(spreads)
    finite = [v for v in spreads.values() if np.isfinite(v)]
    cap = 1.25 * max(finite) if finite else 2.0
    heights = [v if np.isfinite(v) else cap for v in spreads.values()]
    fig, ax = plt.subplots(figsize=(1.6 + 1.7 * len(names), 3.8))
    bars = ax.bar(range(len(names)), heights, color=["tab:gray" if "learning rate" in n else "tab:blue" for n in names])
    for bar, v in zip(bars, spreads.values()):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), "inf (worst <= 0)" if np.isinf(v) else
                ("n/a" if np.isnan(v) else f"{v:.2f}x"), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylim(0, 1.15 * max(heights))
    ax.set_ylabel("best / worst final return")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axis_spreads(sweep: SensitivitySweepConfig, cells: list[dict[str, Any]]) -> dict[str, float]:
    """Per grid axis: spread of the final return averaged over the other axes."""
    out = {}
    for key, values in sweep.grid.items():
        means = []
        for v in values:
            got = [c["final_return"] for c in cells if c[key] == v and np.isfinite(c["final_return"])]
            means.append(float(np.mean(got)) if got else float("nan"))
        out[f"{key.split('.')[-1]} (marginal)"] = spread(means)
    return out


def run_sensitivity_sweep(sweep: SensitivitySweepConfig, out: str | Path, *, fresh: bool = False,
                          address: str | None = None) -> SensitivitySweepResult:
    """Run (or resume) a sensitivity sweep, then write trials.csv, heatmap.png and tuning_shift.png and
    record it all in MLflow.

    Args:
      sweep: the validated sweep.
      out: the output folder.
      fresh: start over instead of resuming a sweep in `out`.
      address: a Ray cluster; None: $RAY_ADDRESS or an embedded local Ray.

    Returns:
      The SensitivitySweepResult.
    """
    out = Path(out).resolve()
    connect_ray(address)
    base_raw = sensitivity_base_config(sweep)
    base = meta_config_at(base_raw, {})
    space = {k: tune.grid_search(v) for k, v in sweep.grid.items()}
    space[SEED_KEY] = tune.grid_search(list(range(sweep.meta_seeds)))
    total = int(np.prod([len(v) for v in sweep.grid.values()])) * sweep.meta_seeds
    trials = fit(
        tune.with_parameters(sensitivity_trial, base_json=json.dumps(base_raw), cores=cores_for_trial(sweep.resources),
                             results=None if sweep.results is None else str(Path(sweep.results).resolve())), space,
        out=out, name=sweep.name, config_dump=sweep.model_dump(mode="json"), resources=sweep.resources,
        total_trials=total, describe=_describe, fresh=fresh, storage=sweep.storage,
    )
    rows = sorted(({**t["config"], "trial_id": t["trial_id"], "status": t["status"], "path": t["path"],
                    "final_return": t["metrics"].get("final_return", float("nan")),
                    "seconds": t["metrics"].get("compute_s", t["metrics"].get("time_total_s", float("nan")))}
                   for t in trials),
                  key=lambda r: tuple(str(r[k]) for k in [*sweep.grid, SEED_KEY]))
    cells = _cells(sweep, rows)
    total_spread = spread([c["final_return"] for c in cells])

    csv_path, heatmap_path, shift_path = out / "trials.csv", out / "heatmap.png", out / "tuning_shift.png"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*sweep.grid, SEED_KEY, "status", "final_return", "seconds", "trial_id"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    plot_heatmaps(heatmap_path, sweep, cells)
    spreads = {}
    if sweep.baselines_csv:
        spreads.update(baseline_spreads(sweep.baselines_csv, base.env_names))
    spreads[f"{base.method} (whole grid)"] = total_spread
    spreads.update(_axis_spreads(sweep, cells))
    plot_tuning_shift(shift_path, spreads, f"Tuning shift on {', '.join(base.env_names)}: what each search changes")

    columns = ("iteration", "fitness_mean", "fitness_best", "meta_loss")
    finished = [{
        "trial_id": r["trial_id"], "status": r["status"], "name": _describe({k: r[k] for k in [*sweep.grid, SEED_KEY]}),
        "params": {k: r[k] for k in [*sweep.grid, SEED_KEY]},
        "metrics": {"final_return": r["final_return"]} if np.isfinite(r["final_return"]) else {},
        "history": [(h["iteration"], {k: v for k, v in h.items() if k != "iteration"})
                    for h in history(r["path"], columns) if "iteration" in h],
    } for r in rows]
    summary = {"spread": total_spread, **{f"spread.{k}": v for k, v in spreads.items()}}
    parent = record_sweep(sweep.tracking, kind="tune-sensitivity",
                          experiment=f"{experiment_root(out, sweep.storage)}/{sweep.name}",
                          config=sweep.model_dump(mode="json"), summary=summary, trials=finished,
                          artifacts=[csv_path, heatmap_path, shift_path])
    return SensitivitySweepResult(rows, cells, total_spread, out, parent)
