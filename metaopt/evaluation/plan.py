"""Evaluation plans, their cells and the cells' files: every (optimizer, env) cell of a plan
trains fresh agents from scratch, its seeds vmapped (`plan_run` runs them on Ray). A cell's
folder is OUT/cells/LABEL/ENV/; its marker file, written last, records the config hash that
makes a finished cell never run again, and its partial run (partial.safetensors) lets a stopped
cell resume with the numbers of an uninterrupted run.

    resolve_cells(plan)       -> the cells' TrainConfigs (reads configs, tuned file, registry)
    run_plan(plan, cells, out) -> runs what is not finished (metaopt.evaluation.plan_run)
    summarise(out)             -> statistics of a plan folder (metaopt.evaluation.plan_stats)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaopt import registry
from metaopt.config import (
    LEARNED_OPTIMIZERS,
    ConfigError,
    EvalPlanConfig,
    TrainConfig,
    load_sweep_config,
    load_train_config,
)
from metaopt.evaluation.plan_files import (
    CELL_FILE,
    CELLS_DIR,
    PARTIAL_FILE,
    PLAN_FILE,
    folder_name,
)
from metaopt.optimizers.learned import load_meta_params
from metaopt.serialization import metadata_from_bytes, save_bytes
from metaopt.tracking.mlflow_run import code_version

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class Cell:
    """One (optimizer, env) pair of a plan."""

    label: str
    env: str
    config: TrainConfig
    trained_on: tuple[str, ...] | None  # None: a hand-designed optimizer
    source: str  # where the optimizer came from: a spec, a registry URI or a meta-parameter file

    @property
    def key(self) -> str:
        """"LABEL / ENV", the cell's name in logs."""
        return f"{self.label} / {self.env}"

    @property
    def config_hash(self) -> str:
        """The first 16 hex digits of the SHA-256 of the cell's TrainConfig (JSON, sorted keys),
        with a meta-parameter file counted by its content, not its path: a finished cell stays
        finished when the checkout moves or a job's working folder changes, and is run again
        when the weights change."""
        data = self.config.model_dump(mode="json")
        path = data["optimizer"].get("meta_params")
        if path:
            data["optimizer"]["meta_params"] = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def folder(self, out: Path) -> Path:
        """Where the cell's files go: OUT/cells/LABEL/ENV (LABEL made a folder name).

        Args:
          out: the plan's folder.

        Returns:
          The cell's folder.
        """
        return Path(out) / CELLS_DIR / folder_name(self.label) / self.env


def submitted_by_ray_job() -> bool:
    """True inside a driver started by `ray job submit` (Ray sets this variable for it).

    Returns:
      Whether RAY_JOB_CONFIG_JSON_ENV_VAR is set.
    """
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def load_plan(path: str | Path, overrides: dict[str, Any] | None = None) -> EvalPlanConfig:
    """An evaluation plan from YAML with dotted overrides; ConfigError in one line if invalid.

    Args:
      path: the plan's YAML file.
      overrides: dotted key -> value.

    Returns:
      The validated EvalPlanConfig.
    """
    return load_sweep_config(path, EvalPlanConfig, overrides)


def resolve_cells(plan: EvalPlanConfig) -> list[Cell]:
    """Every cell's TrainConfig, loaded and checked before anything runs: configs/ppo/ENV.yaml,
    the tuned-baselines file, registered models (downloaded once each) and meta-parameter files.

    Raises:
      ConfigError: one line naming the optimizer or env and the fix.

    Args:
      plan: the validated plan.

    Returns:
      The cells, env by env, optimizers in plan order.
    """
    for folder in plan.reuse_from:
        if not (Path(folder) / PLAN_FILE).is_file():
            raise ConfigError(f"reuse_from: {folder} holds no {PLAN_FILE}; give results folders written by "
                              "`metaopt evaluate`")
    fetched: dict[str, tuple[Path, str, dict[str, Any]]] = {}
    for entry in plan.optimizers:
        if entry.optimizer.startswith("models:/") and entry.optimizer not in fetched:
            fetched[entry.optimizer] = registry.fetch(entry.optimizer, plan.tracking)
    cells = []
    for env in plan.envs:  # env by env: a partly run plan has whole columns to compare
        for entry in plan.optimizers:
            overrides: dict[str, Any] = plan.agent_overrides(env)
            overrides.update({"seed": plan.seed, "num_seeds": plan.seeds})
            if plan.budget(env) is not None:
                overrides["agent.total_timesteps"] = plan.budget(env)
            optimizer: str | None = entry.optimizer
            source = entry.optimizer
            if entry.optimizer in fetched:
                path, method, settings = fetched[entry.optimizer]
                overrides["optimizer"] = {**settings, "meta_params": str(path)}
                optimizer = None
            elif entry.meta_params is not None:
                source = entry.meta_params.replace("{env}", env)
                overrides["optimizer.meta_params"] = source
            overrides.update({f"optimizer.{k}": v for k, v in entry.settings_for(env).items()})
            where = f"optimizers: {entry.name} on {env}"
            try:
                cfg = load_train_config(env=env, optimizer=optimizer, overrides=overrides, tuned_file=plan.tuned_file)
                if cfg.optimizer.name in LEARNED_OPTIMIZERS:
                    load_meta_params(cfg.optimizer.meta_params, cfg.optimizer.name)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(f"{where}: meta_params: {exc}") from None
            trained = None if entry.trained_on is None else tuple(e.replace("{env}", env) for e in entry.trained_on)
            cells.append(Cell(entry.name, env, cfg, trained, source))
    return cells


def select_cells(cells: list[Cell], patterns: list[str]) -> list[Cell]:
    """The cells whose "LABEL/ENV" matches one of the shell-style patterns (e.g. "adam/*",
    "open-*/freeway"), in plan order: a part of a plan to run first. The plan itself, its
    summary and its normaliser stay whole.

    Raises:
      ConfigError: a pattern that matches no cell, naming the cells there are.

    Args:
      cells: from `resolve_cells(plan)`.
      patterns: the patterns; empty: every cell.

    Returns:
      The selected cells.
    """
    if not patterns:
        return cells
    names = [f"{c.label}/{c.env}" for c in cells]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            labels, envs = dict.fromkeys(c.label for c in cells), dict.fromkeys(c.env for c in cells)
            raise ConfigError(f"--only {pattern}: matches no cell; cells are LABEL/ENV with labels "
                              f"{', '.join(labels)} and envs {', '.join(envs)} (e.g. --only 'adam/*')")
    return [c for c, name in zip(cells, names) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def is_finished(cell: Cell, out: Path) -> bool:
    """Whether the cell's folder holds its marker file with the cell's current config hash.

    Args:
      cell: the cell.
      out: the plan's folder.

    Returns:
      True for a finished cell of the same config.
    """
    marker = cell.folder(out) / CELL_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == cell.config_hash
    except (OSError, json.JSONDecodeError):
        return False


def reusable_cells(cells: list[Cell], out: Path, folders: list[str]) -> dict[str, Path]:
    """The unfinished cells that other plans' results folders hold finished with the same
    config hash (the first folder that has one wins).

    Args:
      cells: the plan's cells.
      out: the plan's folder.
      folders: the plan's `reuse_from`.

    Returns:
      Cell key -> the finished cell's folder elsewhere.
    """
    found: dict[str, Path] = {}
    for folder in folders:
        for marker in sorted(Path(folder).glob(f"{CELLS_DIR}/*/*/{CELL_FILE}")):
            try:
                found.setdefault(json.loads(marker.read_text()).get("config_hash"), marker.parent)
            except (OSError, json.JSONDecodeError):
                continue
    unfinished = [c for c in cells if not is_finished(c, out)]
    return {c.key: found[c.config_hash] for c in unfinished
            if c.config_hash in found and found[c.config_hash].resolve() != c.folder(out).resolve()}


def copy_cell(cell: Cell, out: Path, source: Path) -> None:
    files = {p.name: p.read_bytes() for p in source.iterdir()
             if p.is_file() and p.name not in (CELL_FILE, PARTIAL_FILE)}
    try:  # a copy of a copy names the cell's first folder, and the commit that trained it
        marker = json.loads((source / CELL_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        marker = {}
    write_cell(cell, out, files, reused_from=marker.get("reused_from") or str(source),
                made_by=marker.get("code_version"))


def write_cell(cell: Cell, out: Path, files: dict[str, bytes], reused_from: str | None = None,
                made_by: str | None = None) -> None:
    """Files first, into a fresh folder moved into place, the marker last: a crash leaves
    either a finished cell or none. The marker records the code version that trained the cell
    (`made_by` for a copied cell: its source's; None: this checkout's)."""
    target = cell.folder(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{cell.env}-"))
    staging.chmod(target.parent.stat().st_mode & 0o777)  # mkdtemp's 0700 would hide the cell from the team
    for name, data in files.items():
        (staging / name).write_bytes(data)
    (staging / CELL_FILE).write_text(json.dumps({
        "label": cell.label, "env": cell.env, "config_hash": cell.config_hash, "source": cell.source,
        "trained_on": None if cell.trained_on is None else list(cell.trained_on),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **({"reused_from": reused_from} if reused_from else {}),
        **({"code_version": made_by or code_version()} if made_by or not reused_from else {}),
    }, indent=2))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def read_partial(cell: Cell, out: Path) -> tuple[bytes | None, str]:
    """The cell's saved partial run, if it belongs to the cell's current config.

    Args:
      cell: the cell.
      out: the plan's folder.

    Returns:
      (its bytes or None, a note for the log: "" when there is no file).
    """
    path = cell.folder(out) / PARTIAL_FILE
    if not path.is_file():
        return None, ""
    data = path.read_bytes()
    try:
        meta = metadata_from_bytes(data, str(path))
    except ValueError as exc:
        return None, f"{cell.key}: {exc}; starting the cell over"
    if meta.get("config_hash") != cell.config_hash:
        return None, f"{cell.key}: {PARTIAL_FILE} is of another config; starting the cell over"
    return data, f"{cell.key}: resuming at update {meta.get('updates_done')} ({PARTIAL_FILE})"


def save_partial(cell: Cell, out: Path, data: bytes) -> None:
    save_bytes(cell.folder(out) / PARTIAL_FILE, data)
