"""A baseline sweep's trials.csv, the one place that knows its format, and the choice of the
best learning rate from its rows. No Ray here: reports and figures read sweeps through it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

COMPLETED, STOPPED, FAILED, UNFINISHED = "completed", "stopped early", "failed", "unfinished"

CSV_FIELDS = ("trial_id", "env", "optimizer", "learning_rate", "status", "final_return", "final_return_se",
              "last_episode_return", "env_steps", "env_steps_per_second", "seconds", "seed_returns")
_NUMBERS = ("learning_rate", "final_return", "final_return_se", "last_episode_return", "env_steps_per_second", "seconds")


def write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    """trials.csv: one row per trial with CSV_FIELDS (other keys left out).

    Args:
      path: the CSV file to write.
      rows: trial rows.
    """
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        # Each seed's final return, in seed order, space-separated.
        w.writerows({**r, "seed_returns": " ".join(repr(float(v)) for v in r.get("seed_returns", []))} for r in rows)


def read_trials(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a baseline sweep's trials.csv with numbers as numbers (NaN where empty),
    sorted by env, optimizer and learning rate.

    Args:
      path: the CSV file.

    Returns:
      The rows.
    """
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in _NUMBERS:
            r[key] = float(r[key]) if r.get(key) not in (None, "") else float("nan")
        r["env_steps"] = int(float(r["env_steps"] or 0))
        r["seed_returns"] = [float(v) for v in (r.get("seed_returns") or "").split()]  # empty in older files
    return sorted(rows, key=lambda r: (r["env"], r["optimizer"], r["learning_rate"]))


def best_per_group(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The completed trial with the highest final return, per env and optimizer (ties: the
    smaller learning rate).

    Args:
      rows: trial rows as in trials.csv, sorted by learning rate within each group.

    Returns:
      env -> optimizer -> the best row, with `at_grid_edge` added.
    """
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["status"] != COMPLETED or not np.isfinite(r["final_return"]):
            continue
        held = best.setdefault(r["env"], {}).get(r["optimizer"])
        if held is None or r["final_return"] > held["final_return"]:
            best[r["env"]][r["optimizer"]] = r
    for env, per_opt in best.items():
        for optimizer, r in per_opt.items():
            # The best at an end of the grid may lie beyond it: widen the grid that way.
            grid = [g["learning_rate"] for g in rows if g["env"] == env and g["optimizer"] == optimizer]
            per_opt[optimizer] = {**r, "at_grid_edge": r["learning_rate"] in (min(grid), max(grid))}
    return best
