"""An evaluation plan's finished cells read from its folder (and from its `more_seeds` folders,
merged into the cells of the same config): per-seed final returns, configs, device records,
collapse measures; the partial runs of unfinished cells."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaopt.evaluation.plan_files import CELL_FILE, CELLS_DIR, DEVICE_FILE, PARTIAL_FILE, PLAN_FILE, folder_name
from metaopt.serialization import read_metadata


def _finite(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], np.float64)


def _cells_in(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The finished cells of one results folder (see `load_cells`)."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for marker in sorted(Path(out).glob(f"{CELLS_DIR}/*/*/{CELL_FILE}")):
        meta = json.loads(marker.read_text())
        result = json.loads((marker.parent / "results.json").read_text())
        device = marker.parent / DEVICE_FILE
        cells.setdefault(meta["label"], {})[meta["env"]] = {
            "final_returns": _finite(result["final_return"]), "trained_on": meta.get("trained_on"),
            "config": result.get("config", {}), "folder": marker.parent, "source": meta.get("source"),
            "device": json.loads(device.read_text()) if device.is_file() else {},
            **collapse_measures(marker.parent / "curves.csv"), "reused_from": meta.get("reused_from"),
            "code_version": meta.get("code_version"), "blocks": [],
        }
    return cells


def seed_range(config: dict[str, Any]) -> range:
    """The seeds a run's config (results.json) trained."""
    return range(config.get("seed", 0), config.get("seed", 0) + config.get("num_seeds", 1))


def _merge_block(cell: dict[str, Any], block: dict[str, Any], where: str) -> None:
    """A finished cell of the same config on other seeds joins `cell`: its runs, drops, compute."""
    def fixed(config: dict[str, Any]) -> dict[str, Any]:  # an unset section (a2c: null) is no difference
        return {k: v for k, v in config.items() if k not in ("seed", "num_seeds") and v is not None}

    if fixed(block["config"]) != fixed(cell["config"]):
        raise ValueError(f"more_seeds: {where} ran another config than this plan's cell; "
                         "run it with the same plan, changing only seed and seeds")
    taken = [seed_range(cell["config"]), *(seed_range(b["config"]) for b in cell["blocks"])]
    new = seed_range(block["config"])
    if any(set(new) & set(r) for r in taken):
        raise ValueError(f"more_seeds: {where} has seeds {new.start}..{new.stop - 1}, which this cell already has; "
                         "run the extra seeds from the first one the plan lacks")
    cell["final_returns"] = np.concatenate([cell["final_returns"], block["final_returns"]])
    for measure in COLLAPSE_MEASURES:
        cell[measure] = np.concatenate([cell[measure], block[measure]])
    cell["blocks"].append({"folder": block["folder"], "config": block["config"], "device": block["device"],
                           "code_version": block.get("code_version")})


def load_cells(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> env -> {final_returns, trained_on, config, folder} for every finished cell, with
    the runs of the plan's `more_seeds` folders merged into the cells of the same config.

    Args:
      out: the plan's folder.

    Returns:
      The finished cells by label and env; each also carries its source, device record, per-seed
      collapse measures (`collapse_measures`), its seed blocks from `more_seeds` (`blocks`) and, for a cell copied from another
      plan's results, where it came from.

    Raises:
      ValueError: a `more_seeds` cell ran another config, or seeds the cell already has.
    """
    cells = _cells_in(out)
    plan = yaml.safe_load((Path(out) / PLAN_FILE).read_text()) if (Path(out) / PLAN_FILE).is_file() else {}
    for extra in plan.get("more_seeds") or []:
        if Path(extra).resolve() == Path(out).resolve():
            continue  # the plan run on other seeds names its own folder
        for label, by_env in _cells_in(Path(extra)).items():
            for env, block in by_env.items():
                if env in cells.get(label, {}):
                    _merge_block(cells[label][env], block, f"{extra} ({label} / {env})")
    return cells


def partial_runs(out: Path, labels: list[str], envs: list[str]) -> dict[str, str]:
    """The unfinished cells that saved a partial run, and how far they got.

    Args:
      out: the plan's folder.
      labels: the plan's optimizer labels.
      envs: the plan's envs.

    Returns:
      "LABEL / ENV" -> "update N of M", in plan order.
    """
    found = {}
    for label in labels:
        for env in envs:
            path = Path(out) / CELLS_DIR / folder_name(label) / env / PARTIAL_FILE
            if path.is_file() and not (path.parent / CELL_FILE).is_file():
                meta = read_metadata(path)
                found[f"{label} / {env}"] = f"update {meta.get('updates_done')} of {meta.get('num_updates')}"
    return found


COLLAPSE_WINDOW = 20  # logged updates averaged before measuring a fall (Optim4RL's final-return window)
COLLAPSE_MEASURES = ("largest_drop", "end_drop", "end_share")


def collapse_measures(curves: Path, window: int = COLLAPSE_WINDOW) -> dict[str, np.ndarray]:
    """Per seed, how far the return fell below its running peak (policy collapse), on the
    per-update mean return of finished episodes (updates with none carry the last value)
    smoothed by a trailing mean over `window` updates, so that one noisy update is not a fall.

    Args:
      curves: a cell's curves.csv (return_seedK columns).
      window: updates per trailing mean (fewer for a run shorter than that).

    Returns:
      {"largest_drop": max over t of (max_{s<=t} S_s - S_t), "end_drop": max_t S_t - S_T (what
      of its peak the run had lost at its end), "end_share": end_drop / max_t S_t (that loss as
      a share of the peak, comparable across envs; NaN where the peak is not above 0)}, S the
      smoothed return; one value per seed (NaN for a seed without a finished episode); empty
      arrays when the file is missing.
    """
    if not curves.is_file():
        return {measure: np.array([]) for measure in COLLAPSE_MEASURES}
    with curves.open() as f:
        rows = list(csv.DictReader(f))
    seeds = sorted((k for k in rows[0] if k.startswith("return_seed")), key=lambda k: int(k.removeprefix("return_seed")))
    largest, end, share = [], [], []
    for key in seeds:
        r = np.array([float(row[key]) if row[key] not in ("", "nan") else np.nan for row in rows])
        valid = np.isfinite(r)
        if not valid.any():
            largest.append(np.nan)
            end.append(np.nan)
            share.append(np.nan)
            continue
        r = carried_forward(r[np.argmax(valid):, None])[:, 0]  # over updates without a finished episode
        w = min(window, r.size)
        smooth = np.convolve(r, np.ones(w) / w, mode="valid")
        largest.append(float(np.max(np.maximum.accumulate(smooth) - smooth)))
        peak = float(np.max(smooth))
        end.append(peak - float(smooth[-1]))
        share.append(end[-1] / peak if peak > 0 else np.nan)
    return {"largest_drop": np.asarray(largest), "end_drop": np.asarray(end), "end_share": np.asarray(share)}


def carried_forward(values: np.ndarray) -> np.ndarray:
    """Each column's latest finite value carried forward along the rows (NaN before its first):
    a seed's return of its latest finished episode at every update, also where episodes outlast
    an update (Freeway).

    Args:
      values: updates x seeds, NaN where no episode finished in that update.

    Returns:
      The same shape, gaps filled from above.
    """
    out = np.array(values, np.float64)
    for row in range(1, out.shape[0]):
        gap = ~np.isfinite(out[row])
        out[row, gap] = out[row - 1, gap]
    return out
