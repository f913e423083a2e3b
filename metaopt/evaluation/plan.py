"""Evaluation plans: every (optimizer, env) cell of a plan trains fresh PPO agents from
scratch (its seeds vmapped) as one Ray task, on any node, with a GPU where the cluster has
them. The driver writes each finished cell to OUT/cells/LABEL/ENV/ and records it as an MLflow
child run of the plan's run; a finished cell is never run again, so an interrupted plan goes
on where it stopped when the same command runs again. A running cell also saves its agents'
state after each compiled chunk (OUT/cells/LABEL/ENV/partial.safetensors, written by the driver
every `progress_every_s`): a stopped plan resumes its unfinished cells from there, with the numbers
of an uninterrupted run, and so does a cell whose worker died, which the driver runs again.

    resolve_cells(plan)       -> the cells' TrainConfigs (reads configs, tuned file, registry)
    run_plan(plan, cells, out) -> runs what is not finished, records it, writes the summary
    summarise(out)             -> statistics of a plan folder (metaopt.evaluation.plan_stats)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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
    DEVICE_FILE,
    PARTIAL_FILE,
    PLAN_FILE,
    PROVENANCE_FILE,
    SUMMARY_FILE,
    folder_name,
)
from metaopt.evaluation.plan_stats import summarise
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
    from metaopt import registry
    from metaopt.optimizers.learned import load_meta_params

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
            overrides.update({f"optimizer.{k}": v for k, v in entry.set.items()})
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


def train_cell(config: dict[str, Any], label: str, meta_params: dict | None, key: str = "",
               progress=None, config_hash: str = "", partial_every_s: float = 0.0,
               resume: bytes | None = None) -> dict[str, bytes]:
    """The work of one cell, on whichever node Ray picks: train the agents, return the files
    (results.json, curves.csv, returns.png) as bytes; it writes nothing where it runs.

    Args:
      config: a TrainConfig as plain data.
      label: the optimizer's label.
      meta_params: the learned optimizer's meta-parameters (None for Adam and RMSProp); sent
        with the task, so no node needs the driver's files.
      key: the cell's name in progress reports.
      progress: a `CellProgress` actor to report each compiled chunk to and to hand the cell's
        partial runs to (None: silent).
      config_hash: the cell's `Cell.config_hash`, stored with its partial runs.
      partial_every_s: hand over a partial run at most this often (the driver saves them at
        this period anyway; serialising the state costs a device-to-host copy).
      resume: a partial run of this cell to go on from (`PartialRun.to_bytes()`; None: from the
        start). An argument, not fetched here: a task blocked in `ray.get` gives its CPUs back to
        Ray, which then starts another cell beside it on the same cores.

    Returns:
      File name -> contents: results.json, curves.csv, returns.png and device.json.
    """
    import jax

    from metaopt.evaluation.report import latest_return, write_run
    from metaopt.evaluation.runs import PartialRunMismatch, run_training
    from metaopt.optimizers import build_optimizer

    if meta_params is not None:  # the driver's file path means nothing on another node
        config = {**config, "optimizer": {**config["optimizer"], "meta_params": None}}
    cfg = TrainConfig.model_validate(config)
    optimizer = None if meta_params is None else build_optimizer(cfg.optimizer, cfg.agent, meta_params)

    def report(done: int, total: int, metrics: dict) -> None:
        progress.report.remote(key, done, total, latest_return(metrics["episode_return"]))

    handed = [time.perf_counter()]

    def keep(partial) -> None:
        if time.perf_counter() - handed[0] >= partial_every_s:
            progress.keep_partial.remote(key, partial.to_bytes({"config_hash": config_hash}))
            handed[0] = time.perf_counter()

    def train(resume: bytes | None):
        return run_training(cfg, optimizer=optimizer, label=label, progress=None if progress is None else report,
                            resume=resume, checkpoint=None if progress is None else keep)

    started = _now()
    try:
        result = train(resume)
    except PartialRunMismatch as exc:  # same config, other state layout (another code version)
        progress.note.remote(f"{key}: the saved partial run does not fit this code ({exc}); starting the cell over")
        result = train(None)
    device = jax.devices()[0]
    where = {"platform": device.platform, "device_kind": device.device_kind, "node": platform.node(),
             "cpus": os.cpu_count(), "compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds,
             "resumed_at_update": result.resumed_at, "started": started, "finished": _now()}
    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), [result], comparison=False)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    files[DEVICE_FILE] = json.dumps(where, indent=2).encode()
    return files


def _now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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


def _copy_cell(cell: Cell, out: Path, source: Path) -> None:
    files = {p.name: p.read_bytes() for p in source.iterdir()
             if p.is_file() and p.name not in (CELL_FILE, PARTIAL_FILE)}
    try:  # a copy of a copy names the cell's first folder, and the commit that trained it
        marker = json.loads((source / CELL_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        marker = {}
    _write_cell(cell, out, files, reused_from=marker.get("reused_from") or str(source),
                made_by=marker.get("code_version"))


def _write_cell(cell: Cell, out: Path, files: dict[str, bytes], reused_from: str | None = None,
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


def _gpus_per_cell(plan: EvalPlanConfig) -> float:
    import ray

    if plan.resources.gpus_per_cell is not None:
        return plan.resources.gpus_per_cell
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def run_plan(plan: EvalPlanConfig, cells: list[Cell], out: str | Path, *, log: LogFn = print,
             address: str | None = None, stop_after: int | None = None,
             only: list[str] | None = None) -> dict[str, Any]:
    """Run the plan's unfinished cells as Ray tasks, record every cell in MLflow, write the
    summary (summary.json, table, figures) and return it.

    Args:
      plan: the validated plan.
      cells: from `resolve_cells(plan)`.
      out: the plan's folder (a user's path or shared storage; never the job's working folder).
      log: where progress lines go.
      address: a Ray cluster to join; None: $RAY_ADDRESS or an embedded local Ray.
      stop_after: finish after this many newly run cells (tests: an interrupted plan).
      only: run only the unfinished cells matching these "LABEL/ENV" patterns (`select_cells`);
        the summary still covers every finished cell of the plan.

    Returns:
      The summary from `plan_stats.summarise(out)`.
    """
    from metaopt.tracking.plans import PlanTracker

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN_FILE).write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    history = json.loads((out / PROVENANCE_FILE).read_text()) if (out / PROVENANCE_FILE).is_file() else []
    history.append({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "code_version": code_version(),
                    "command": _command_line(sys.argv)})
    (out / PROVENANCE_FILE).write_text(json.dumps(history, indent=2))
    tracker = PlanTracker(plan, out)
    reused = reusable_cells(cells, out, plan.reuse_from)
    for cell in cells:
        if cell.key in reused:
            _copy_cell(cell, out, reused[cell.key])
    if reused:
        log(f"plan {plan.name}: {len(reused)} cells taken from other plans' results (the same runs): "
            + ", ".join(f"{key} from {folder}" for key, folder in reused.items()))
    done = [c for c in cells if is_finished(c, out)]
    todo = [c for c in select_cells(cells, only or []) if not is_finished(c, out)]
    if stop_after is not None:
        todo = todo[:stop_after]
    selected = f" (--only: {len(todo)} of {len(cells) - len(done)} unfinished)" if only else ""
    log(f"plan {plan.name}: {len(cells)} cells, {len(done)} already finished, {len(todo)} to run{selected}")
    for cell in done:
        tracker.record_cell(cell, cell.folder(out))
    try:
        if todo:
            _run_cells(plan, todo, out, tracker, log, address)
        summary = summarise(out)
    except BaseException:
        tracker.finish(failed=True)
        raise
    tracker.finish(summary=summary, artifacts=[out / SUMMARY_FILE, *sorted(out.glob("*.png")), out / "table.md"])
    return summary


def read_partial(cell: Cell, out: Path) -> tuple[bytes | None, str]:
    """The cell's saved partial run, if it belongs to the cell's current config.

    Args:
      cell: the cell.
      out: the plan's folder.

    Returns:
      (its bytes or None, a note for the log: "" when there is no file).
    """
    from metaopt.serialization import metadata_from_bytes

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


class CellProgress:
    """A Ray actor the running cells report to: per cell its first and latest report, so the
    driver can print progress lines with an ETA, and its latest partial run, which the driver
    saves and a retried cell resumes from."""

    def __init__(self):
        self.first: dict[str, tuple[float, int]] = {}
        self.last: dict[str, tuple[float, int, int, float]] = {}
        self.partials: dict[str, bytes] = {}
        self.unsaved: set[str] = set()
        self.notes: list[str] = []

    def note(self, line: str) -> None:
        """A line for the driver's log from a cell (Ray may not forward the workers' output).

        Args:
          line: the text.
        """
        self.notes.append(line)

    def take_notes(self) -> list[str]:
        """The lines noted since the last call.

        Returns:
          The lines, oldest first.
        """
        out, self.notes = self.notes, []
        return out

    def keep_partial(self, key: str, data: bytes, on_disk: bool = False) -> None:
        """Hold a cell's latest partial run (from the cell, or from the driver's file).

        Args:
          key: the cell's name.
          data: `PartialRun.to_bytes()`.
          on_disk: the driver read it from its file: nothing to save again.
        """
        self.partials[key] = data
        if not on_disk:
            self.unsaved.add(key)

    def partial(self, key: str) -> bytes | None:
        """The latest partial run of a cell.

        Args:
          key: the cell's name.

        Returns:
          Its bytes; None when the cell has none.
        """
        return self.partials.get(key)

    def take_unsaved(self) -> dict[str, bytes]:
        """The partial runs that arrived since the last call, for the driver to save.

        Returns:
          Cell name -> bytes.
        """
        out = {key: self.partials[key] for key in sorted(self.unsaved)}
        self.unsaved.clear()
        return out

    def report(self, key: str, done: int, total: int, ret: float) -> None:
        """Record a cell's progress (called by the cells, as a Ray actor method).

        Args:
          key: the cell's name.
          done: updates done.
          total: updates in all.
          ret: the latest mean episode return.
        """
        now = time.time()
        self.first.setdefault(key, (now, done))
        self.last[key] = (now, done, total, ret)

    def lines(self) -> list[str]:
        """One line per unfinished cell that has reported: updates done, return, ETA.

        Returns:
          The lines.
        """
        out = []
        for key, (now, done, total, ret) in self.last.items():
            if done >= total:
                continue
            t0, d0 = self.first[key]
            eta = f", eta {(now - t0) / (done - d0) * (total - done) / 60:.0f} min" if done > d0 else ""
            out.append(f"  {key}: update {done}/{total}, return {ret:.2f}{eta}")
        return out


def _command_line(argv: list[str]) -> str:
    """How this process was started, as a user would type it."""
    if not argv:
        return ""
    if argv[0].endswith(("metaopt/cli.py", "metaopt/__main__.py")):
        program = "metaopt"  # python -m metaopt.cli: the same command
    else:
        program = f"python {argv[0]}" if argv[0].endswith(".py") else Path(argv[0]).name
    return " ".join([program, *argv[1:]])


CELL_RETRIES = 2  # a cell whose worker or node dies runs again this many times, from its latest partial run


def _cell_failures_retried() -> tuple[type[Exception], ...]:
    from ray import exceptions as ray_exceptions

    return (ray_exceptions.WorkerCrashedError, ray_exceptions.NodeDiedError, ray_exceptions.OutOfMemoryError,
            ray_exceptions.ObjectLostError)


def _run_cells(plan: EvalPlanConfig, todo: list[Cell], out: Path, tracker, log: LogFn, address: str | None) -> None:
    import ray

    from metaopt.distributed.job import connect_ray, terminate_as_interrupt
    from metaopt.distributed.resources import ray_options
    from metaopt.optimizers.learned import load_meta_params

    connect_ray(address)
    retried_failures = _cell_failures_retried()
    # Ray's own retries would rerun a task with its first arguments, so the driver resubmits a
    # cell whose worker or node died itself, from the newest partial run the cell handed over.
    task = ray.remote(train_cell).options(**ray_options(plan.resources.cpus_per_cell, _gpus_per_cell(plan)),
                                          max_retries=0)
    progress = ray.remote(CellProgress).options(num_cpus=0).remote()
    metas: dict[str, dict | None] = {}
    pending: dict = {}  # ref -> (cell, submitted at, attempt)

    def submit(cell: Cell, resume: bytes | None, attempt: int) -> None:
        ref = task.remote(cell.config.model_dump(mode="json"), cell.label, metas[cell.key], cell.key, progress,
                          cell.config_hash, plan.progress_every_s, resume)
        pending[ref] = (cell, time.perf_counter(), attempt)

    for cell in todo:
        metas[cell.key] = None
        if cell.config.optimizer.name in LEARNED_OPTIMIZERS:
            metas[cell.key] = load_meta_params(cell.config.optimizer.meta_params, cell.config.optimizer.name)[1]
        partial, note = read_partial(cell, out)
        if note:
            log(note)
        if partial is not None:
            ray.get(progress.keep_partial.remote(cell.key, partial, True))
        submit(cell, partial, 0)
    running = {cell.key: cell for cell, _, _ in pending.values()}

    def save_partials() -> None:  # only of cells still running: a finished cell's folder is final
        for key, data in ray.get(progress.take_unsaved.remote()).items():
            if key in running:
                _save_partial(running[key], out, data)
        for line in ray.get(progress.take_notes.remote()):
            log(line)

    # Ray's driver aborts on SIGTERM (`kill`, `ray job stop`); it stops the plan as Ctrl-C does instead, so
    # the partial runs below are saved.
    with terminate_as_interrupt():
        finished = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=plan.progress_every_s)
                if not ready:  # a line for each running cell and their partial runs saved, every progress_every_s
                    save_partials()
                    for line in ray.get(progress.lines.remote()):
                        log(line)
                    continue
                ref = ready[0]
                cell, started, attempt = pending.pop(ref)
                try:
                    files = ray.get(ref)
                except retried_failures as exc:
                    if attempt >= CELL_RETRIES:
                        raise
                    save_partials()
                    newest = ray.get(progress.partial.remote(cell.key))
                    log(f"{cell.key}: {type(exc).__name__}; running it again (retry {attempt + 1} of {CELL_RETRIES}) "
                        + ("from its latest partial run" if newest is not None else "from the start"))
                    submit(cell, newest, attempt + 1)
                    continue
                del running[cell.key]
                save_partials()  # and the cell's notes
                _write_cell(cell, out, files)
                tracker.record_cell(cell, cell.folder(out))
                finished += 1
                finals = json.loads(files["results.json"])["final_return"]
                log(f"cell {finished}/{len(todo)} {cell.key}: final return {np.nanmean(finals):.2f} "
                    f"over {len(finals)} seeds ({time.perf_counter() - started:.0f} s since submitted)")
        finally:  # stopped or failed: keep the newest partial runs the cells handed over
            try:
                save_partials()
            except Exception:  # noqa: BLE001 - Ray already gone: the files of the last minute stand
                pass


def _save_partial(cell: Cell, out: Path, data: bytes) -> None:
    from metaopt.serialization import save_bytes

    save_bytes(cell.folder(out) / PARTIAL_FILE, data)
