"""Records of finished sensitivity trials: a small JSON per trial (grid point, meta-seed,
config hash, per-seed final returns, compute seconds, code version) beside its trained
meta-parameters, named by grid point and meta-seed, so a later sweep can report a trial whose
record matches its config instead of running it again."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

SEED_KEY = "meta_seed"  # the trial parameter that holds its meta-seed


def trial_record_name(point: dict[str, Any], meta_seed: int) -> str:
    """A trial's file stem in the results folder: its grid values and meta-seed, e.g.
    `meta_learning_rate=0.001,reset_interval=32,meta_seed=0`."""
    parts = [f"{key.split('.')[-1]}={value}" for key, value in point.items()] + [f"{SEED_KEY}={meta_seed}"]
    return re.sub(r"[^A-Za-z0-9._=,-]", "_", ",".join(parts))


def read_trial_record(results: Path, point: dict[str, Any], meta_seed: int, config_key: str) -> dict | None:
    """The finished trial's record in `results`, or None when absent or made with another config.

    Args:
      results: the results folder.
      point: the grid point (dotted keys).
      meta_seed: the trial's meta-seed.
      config_key: the trial's meta-training config hash.

    Returns:
      The record (with `meta_params`: the path of its trained meta-parameters), or None.
    """
    stem = trial_record_name(point, meta_seed)
    record_path, params_path = results / f"{stem}.json", results / f"{stem}.safetensors"
    if not (record_path.is_file() and params_path.is_file()):
        return None
    record = json.loads(record_path.read_text())
    if record.get("config_hash") != config_key:
        return None
    return {**record, "meta_params": str(params_path)}


def write_trial_record(results: Path, record: dict[str, Any], meta_params: Path) -> Path:
    """Write a finished trial's record and a copy of its meta-parameters into `results`.

    Args:
      results: the results folder (created).
      record: as `sensitivity_trial` makes it (point, meta_seed, config_hash, returns...).
      meta_params: the trained meta-parameters' file.

    Returns:
      The record's path.
    """
    results.mkdir(parents=True, exist_ok=True)
    stem = trial_record_name(record["point"], record[SEED_KEY])
    shutil.copyfile(meta_params, results / f"{stem}.safetensors")
    path = results / f"{stem}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
