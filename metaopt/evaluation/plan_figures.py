"""An evaluation plan's figures: aggregates with CIs, performance profiles, the generalisation
matrix and learning curves, one colour per optimizer label."""

from __future__ import annotations

import csv
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from metaopt.evaluation import stats
from metaopt.evaluation.plan_cells import carried_forward
from metaopt.evaluation.plan_tables import trained_on_text
from metaopt.plotting import label_colours, pyplot


def plot_aggregate(path: Path, summary: dict[str, Any]) -> None:
    """Normalised IQM and mean with 95% CIs per optimizer (rliable's aggregate plot).

    Args:
      path: the PNG to write (nothing is written without aggregates).
      summary: from `summarise`.
    """
    labels = [label for label in summary["labels"] if label in summary["aggregate"]]
    if not labels:
        return
    plt, colour = pyplot(), label_colours(summary["labels"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(labels) + 1.6), dpi=120, sharey=True)
    for ax, name, title in zip(axes, ("normalised_iqm", "normalised_mean"), ("IQM", "mean")):
        for i, label in enumerate(labels):
            entry = summary["aggregate"][label][name]
            lo, hi = entry["ci"]
            ax.plot([lo, hi], [i, i], lw=6, alpha=0.5, color=colour[label], solid_capstyle="butt")
            ax.plot(entry["value"], i, "|", color="k", ms=14)
        ax.axvline(1.0, color="grey", ls="--", lw=1)
        ax.set_title(f"{title} of returns / {summary['normalise_by']} IQM")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()  # the plan's first optimizer on top
    fig.suptitle(f"{summary['plan']}: {', '.join(summary['envs'])}, {summary['seeds']} seeds, 95% stratified bootstrap CIs",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_profiles(path: Path, summary: dict[str, Any], normalised: dict[str, dict[str, np.ndarray]]) -> None:
    """Performance profiles: the fraction of runs above each normalised score.

    Args:
      path: the PNG to write (nothing is written without normalised scores).
      summary: from `summarise`.
      normalised: label -> env -> normalised scores per seed.
    """
    present = {label: scores for label, scores in normalised.items() if scores}
    if not present:
        return
    top = max(np.nanmax(np.concatenate(list(s.values()))) for s in present.values())
    taus = np.linspace(0.0, max(1.5, float(top)) * 1.05, 200)
    plt, colour = pyplot(), label_colours(summary["labels"])
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, scores in present.items():
        ax.plot(taus, stats.performance_profile(scores, taus), label=label, lw=1.6, color=colour[label])
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xlabel(f"normalised score τ (return / {summary['normalise_by']} IQM on the env)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title(f"{summary['plan']}: performance profiles", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_generalisation(path: Path, summary: dict[str, Any]) -> None:
    """Rows: optimizers (with the envs they were meta-trained on); columns: envs; cells:
    normalised IQM with its CI, coloured red below the reference (1.0) and blue above it;
    held-out cells hatched, cells not run grey.

    Args:
      path: the PNG to write (nothing is written without a normalised cell).
      summary: from `summarise`.
    """
    labels, envs = summary["labels"], summary["envs"]
    values = np.full((len(labels), len(envs)), np.nan)
    for i, label in enumerate(labels):
        for j, env in enumerate(envs):
            entry = summary["cells"].get(label, {}).get(env, {}).get("normalised")
            if entry:
                values[i, j] = entry["value"]
    if not np.isfinite(values).any():
        return
    plt = pyplot()
    import matplotlib
    from matplotlib.colors import TwoSlopeNorm

    fig, ax = plt.subplots(figsize=(1.8 * len(envs) + 3.5, 0.6 * len(labels) + 1.8), dpi=120)
    # Diverging around the reference (1.0): red below it, blue above it.
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(float(np.nanmin(values)), 0.99), vmax=max(float(np.nanmax(values)), 1.01))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="0.85")  # cells not run: grey, not the reference's white
    im = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    label_box = {"boxstyle": "round,pad=0.25", "facecolor": "black", "alpha": 0.6, "linewidth": 0}
    for i, label in enumerate(labels):
        for j, env in enumerate(envs):
            cell = summary["cells"].get(label, {}).get(env)
            if not cell or "normalised" not in cell:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.3")
                continue
            lo, hi = cell["normalised"]["ci"]
            text = f"{cell['normalised']['value']:.2f}\n[{lo:.2f}, {hi:.2f}]"
            if cell.get("held_out"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.3", lw=0))
                text += "\nheld out"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w", bbox=label_box)
    rows = []
    for label in labels:
        trained = trained_on_text(summary["cells"].get(label, {}))
        rows.append(label if trained is None else f"{label}\n(trained: {trained})")
    ax.set_xticks(range(len(envs)), envs)
    ax.set_yticks(range(len(labels)), rows, fontsize=8)
    fig.colorbar(im, ax=ax, label=f"return / {summary['normalise_by']} IQM (1 = {summary['normalise_by']})")
    ax.set_title(f"{summary['plan']}: generalisation (IQM over {summary['seeds']} seeds, 95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _seed_curves(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Env steps and every seed's latest-episode return (carried forward) from the curves.csv of a
    cell's seed blocks, side by side (over the updates all blocks have)."""
    xs, blocks = [], []
    for folder in folders:
        if not (folder / "curves.csv").is_file():
            continue
        with (folder / "curves.csv").open() as f:
            rows = list(csv.DictReader(f))
        keys = sorted((k for k in rows[0] if k.startswith("return_seed")), key=lambda k: int(k[len("return_seed"):]))
        xs.append(np.array([float(r["env_steps"]) for r in rows]))
        blocks.append(carried_forward(np.array([[float(r[k]) for k in keys] for r in rows])))
    n = min(len(x) for x in xs)
    return xs[0][:n], np.concatenate([b[:n] for b in blocks], axis=1)


def plot_curves(path: Path, summary: dict[str, Any], cells) -> None:
    """Return against env steps per env, one line per optimizer: the mean over seeds of each seed's
    latest finished episode's return, with a band of ± 1 standard error over seeds.

    Args:
      path: the PNG to write (nothing is written when no env has a cell).
      summary: from `summarise`.
      cells: from `load_cells`.
    """
    envs = [env for env in summary["envs"] if any(env in by_env for by_env in cells.values())]
    if not envs:
        return
    plt, colours = pyplot(), label_colours(summary["labels"])
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.6), dpi=120, squeeze=False)
    for ax, env in zip(axes[0], envs):
        for label in summary["labels"]:
            cell = cells.get(label, {}).get(env)
            if cell is None or not (cell["folder"] / "curves.csv").is_file():
                continue
            x, per_seed = _seed_curves([cell["folder"], *(b["folder"] for b in cell.get("blocks", []))])
            seeds = range(per_seed.shape[1])
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # updates before any seed's first episode
                n = np.isfinite(per_seed).sum(axis=1)
                mean = np.nanmean(per_seed, axis=1)
                se = np.nanstd(per_seed, axis=1, ddof=1) / np.sqrt(n)
            colour = colours[label]
            ax.plot(x, mean, lw=1.4, color=colour, label=f"{label} (n={len(seeds)})")
            ax.fill_between(x, mean - se, mean + se, color=colour, alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)  # on every panel: which optimizers ran, and n, differ between envs
    axes[0][0].set_ylabel("return of the latest finished episode")
    title = (f"{summary['plan']}: line = mean over seeds of each seed's latest finished episode; "
             "band = ± 1 standard error over seeds (not the tables' IQM CI)")
    fig.suptitle(textwrap.fill(title, width=int(14 * 4.2 * len(envs))), fontsize=8)  # ~14 characters an inch fit
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
