"""A finished (or growing) sensitivity sweep summarised from its files alone: the trial records a
sweep leaves in its `results` folder and a baseline sweep's trials.csv on the same seeds.

Every configuration's final return is divided by the reference optimizer's (Adam at the
reference's learning rate) on the same evaluation seeds, and its confidence interval comes from a
bootstrap that resamples meta-seeds and evaluation seeds, the seeds paired between the learned
optimizer and the reference, so the reference's own noise is in the interval. Beside it: each
configuration's meta-seed spread, the range (best - worst) over the configurations, and
the tuning shift (the baselines' spread over their learning rates against the learned optimizer's
over its meta grid, with the compute each search took).

    python -m metaopt.tuning.sensitivity_report --results docs/results/optim4rl_catch_sensitivity
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaopt.plotting import pyplot
from metaopt.tuning.trials import COMPLETED, read_trials

RESAMPLES = 10_000
TRIALS_FOLDER, BASELINES_CSV, BASELINES_SWEEP = "trials", "baselines/trials.csv", "baselines/sweep.yaml"
SUMMARY_FILE = "summary.json"


def load_records(folder: Path) -> list[dict[str, Any]]:
    """The trial records (JSON) in a sensitivity sweep's results folder, in file-name order."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def grid_of(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The grid axes the records span: key -> sorted values (keys in the records' order)."""
    keys = list(records[0]["point"])
    return {k: sorted({r["point"][k] for r in records}, key=lambda v: (str(type(v)), v)) for k in keys}


def normalised_ci(returns: np.ndarray, reference: np.ndarray, seed: int = 0,
                  confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(returns) / mean(reference) and its percentile-bootstrap CI, resampling meta-seeds (rows)
    and evaluation seeds (columns; the same draw for the reference, whose runs share the seeds).

    Args:
      returns: final returns, meta-seeds x evaluation seeds.
      reference: the reference's final returns on the same evaluation seeds.
      seed: the bootstrap's seed.
      confidence: the interval's coverage.

    Returns:
      (point estimate, low, high).
    """
    rng = np.random.default_rng(seed)
    m, s = returns.shape
    rows = rng.integers(0, m, (RESAMPLES, m))
    cols = rng.integers(0, s, (RESAMPLES, s))
    resampled = returns[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))
    ratio = resampled / reference[cols].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratio, [tail, 100 - tail])
    return float(returns.mean() / reference.mean()), float(low), float(high)


def configuration_rows(records: list[dict[str, Any]], reference: np.ndarray) -> list[dict[str, Any]]:
    """One row per grid point with records: its normalised return [CI], each meta-seed's normalised
    mean, their standard deviation, the raw mean and the compute seconds of its trials."""
    grid = grid_of(records)
    rows = []
    for i, values in enumerate(itertools.product(*grid.values())):
        point = dict(zip(grid, values))
        mine = sorted((r for r in records if r["point"] == point), key=lambda r: r["meta_seed"])
        if not mine:
            continue
        returns = np.array([r["final_returns"][0] for r in mine])
        value, low, high = normalised_ci(returns, reference, seed=i)
        per_seed = returns.mean(axis=1) / reference.mean()
        rows.append({
            "point": point, "meta_seeds": [r["meta_seed"] for r in mine], "normalised": value, "ci": [low, high],
            "per_meta_seed": per_seed.tolist(),
            "meta_seed_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
            "final_return": float(returns.mean()),
            "compute_s": float(sum(r["meta_training_s"] + r["evaluation_s"] for r in mine)),
        })
    return rows


def baseline_rows(csv_path: Path, env: str, seed_count: int) -> dict[str, list[dict[str, Any]]]:
    """Per optimizer, its completed learning rates on `env`: rate, per-seed returns, seconds."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in read_trials(csv_path):
        if r["env"] == env and r["status"] == COMPLETED and len(r["seed_returns"]) == seed_count:
            out.setdefault(r["optimizer"], []).append(
                {"learning_rate": r["learning_rate"], "returns": np.array(r["seed_returns"]), "seconds": r["seconds"]})
    return out


def _label(value: Any) -> str:
    return f"{value:.0e}" if isinstance(value, float) else str(value).replace("_", " ")


def plot_heatmaps(path: Path, grid: dict[str, list[Any]], rows: list[dict[str, Any]], reference_name: str) -> None:
    """Normalised return over the first two axes (one panel per value of a third), each cell with
    its CI and number of meta-seeds."""
    plt = pyplot()
    keys = list(grid)
    panels = grid[keys[2]] if len(keys) == 3 else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.0 + max(3.4, 2.4 * len(grid[keys[1]])) * len(panels),
                                                      1.8 + 0.9 * len(grid[keys[0]])), squeeze=False)
    values = [r["normalised"] for r in rows]
    for ax, panel in zip(axes[0], panels):
        image = np.full((len(grid[keys[0]]), len(grid[keys[1]])), np.nan)
        for r in rows:
            if panel is not None and r["point"][keys[2]] != panel:
                continue
            i, j = grid[keys[0]].index(r["point"][keys[0]]), grid[keys[1]].index(r["point"][keys[1]])
            image[i, j] = r["normalised"]
            ax.text(j, i, f"{r['normalised']:.3f}\n[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]\nn={len(r['meta_seeds'])}",
                    ha="center", va="center", fontsize=8)
        shown = ax.imshow(image, cmap="viridis", vmin=min(values), vmax=max(values), aspect="auto", alpha=0.8)
        ax.set_xticks(range(len(grid[keys[1]])), [_label(v) for v in grid[keys[1]]])
        ax.set_yticks(range(len(grid[keys[0]])), [_label(v) for v in grid[keys[0]]])
        ax.set_xlabel(keys[1].split(".")[-1])
        if ax is axes[0][0]:
            ax.set_ylabel(keys[0].split(".")[-1])
        if panel is not None:
            ax.set_title(f"{keys[2].split('.')[-1].replace('_', ' ')}: {_label(panel)}", fontsize=10)
    fig.colorbar(shown, ax=axes[0].tolist(), label=f"final return / {reference_name}'s")
    fig.suptitle(f"Final return / {reference_name}'s\n(mean over meta-seeds and seeds; 95% CI; n = meta-seeds)", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_tuning_shift(path: Path, searches: list[dict[str, Any]]) -> None:
    """Each search's normalised return at every point it tried (dots) and its best / worst, with the
    compute the search took in the label."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.0 + 1.8 * len(searches), 4.0))
    for i, s in enumerate(searches):
        ax.scatter(np.full(len(s["values"]), i) + np.linspace(-0.15, 0.15, len(s["values"])), s["values"], s=18,
                   color="tab:blue" if s["learned"] else "tab:gray")
        ax.text(i, max(s["values"]), f"range {s['spread']:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(searches)), [f"{s['name']}\n{s['points']} points, {s['compute_h']:.2f} trial-hours"
                                         for s in searches], fontsize=8)
    ax.set_ylabel("final return / reference's")
    ax.set_title("Tuning shift: what each search spans, and what it costs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise_sensitivity(folder: str | Path, reference: tuple[str, float] = ("adam", 1e-3),
                          cores: float = 1.0) -> dict[str, Any]:
    """Read FOLDER/trials/*.json and FOLDER/baselines/{trials.csv, sweep.yaml}; write
    FOLDER/summary.json, heatmap.png and tuning_shift.png.

    Args:
      folder: the sensitivity study's results folder.
      reference: the baseline optimizer and learning rate everything is divided by.
      cores: cores each trial held (compute hours = its wall seconds x cores / 3600); 1: trial wall-hours,
        the default, since trials share the machine's cores.

    Returns:
      The summary written to summary.json.
    """
    folder = Path(folder)
    records = load_records(folder / TRIALS_FOLDER)
    sweep = yaml.safe_load((folder / BASELINES_SWEEP).read_text())
    seeds = list(range(sweep["seed"], sweep["seed"] + sweep["seeds"]))
    env = records[0]["tasks"][0]
    for r in records:
        if r["eval_seeds"] != seeds or r["tasks"] != [env]:
            raise ValueError(f"trial {r['point']} meta-seed {r['meta_seed']} was scored on seeds {r['eval_seeds']} "
                             f"of {r['tasks']}, the baselines on {seeds} of [{env}]: rerun one of them on the other's")
    baselines = baseline_rows(folder / BASELINES_CSV, env, len(seeds))
    ref_rows = [b for b in baselines[reference[0]] if np.isclose(b["learning_rate"], reference[1], rtol=0.05)]
    if not ref_rows:
        raise ValueError(f"the baselines have no completed {reference[0]} at {reference[1]} on {env}")
    ref = ref_rows[0]["returns"]
    reference_name = f"{reference[0]} {reference[1]:g}"
    grid = grid_of(records)
    rows = configuration_rows(records, ref)
    best, worst = max(rows, key=lambda r: r["normalised"]), min(rows, key=lambda r: r["normalised"])
    sds = [r["meta_seed_sd"] for r in rows if np.isfinite(r["meta_seed_sd"])]
    searches = [{
        "name": f"{name} learning rate", "learned": False, "points": len(b),
        "values": [float(x["returns"].mean() / ref.mean()) for x in b],
        "compute_h": float(sum(x["seconds"] for x in b)) * cores / 3600,
    } for name, b in sorted(baselines.items())]
    searches.append({"name": "Optim4RL meta grid", "learned": True, "points": len(rows),
                     "values": [r["normalised"] for r in rows],
                     "compute_h": float(sum(r["compute_s"] for r in rows)) * cores / 3600})
    for s in searches:  # best - worst: returns can be negative (Catch: -1 .. 1), so no ratio
        s["spread"] = max(s["values"]) - min(s["values"])
    summary = {
        "env": env, "eval_seeds": seeds, "reference": reference_name,
        "reference_final_return": float(ref.mean()), "trials": len(records), "grid": grid,
        "configurations": rows,
        "best": best["point"], "worst": worst["point"], "spread": best["normalised"] - worst["normalised"],
        # How much of the configurations' differences meta-seeds alone could make.
        "meta_seed_sd_mean": float(np.mean(sds)) if sds else float("nan"),
        "configuration_sd": float(np.std([r["normalised"] for r in rows], ddof=1)) if len(rows) > 1 else float("nan"),
        "searches": searches,
    }
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    plot_heatmaps(folder / "heatmap.png", grid, rows, reference_name)
    plot_tuning_shift(folder / "tuning_shift.png", searches)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="the study's folder (trials/, baselines/)")
    args = parser.parse_args(argv)
    summary = summarise_sensitivity(args.results)
    print(f"{summary['trials']} trials, {len(summary['configurations'])} configurations; best - worst {summary['spread']:.3f}; "
          f"wrote {args.results}/summary.json, heatmap.png, tuning_shift.png")


if __name__ == "__main__":
    main()
