"""One MLflow run per meta-training job: config as params, per-iteration metrics,
checkpoints as artifacts, and the trained optimizer registered as a model version.

Works against any tracking URI: the default is a sqlite store in the project folder (no
server); clusters point `tracking.uri` (or MLFLOW_TRACKING_URI) at an `mlflow server` on
the head node. Everything goes through `MlflowClient` with an explicit run id, so no global
"active run" state leaks between jobs or threads.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException

from metaopt import __version__
from metaopt.config import MetaTrainConfig, TrackingConfig
from metaopt.tracking.checkpoints import CHECKPOINT_NAME

PROJECT_DIR = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = "checkpoints"
OPTIMIZER_DIR = "optimizer"


def default_store() -> Path:
    """The local store when nothing else is configured: $XDG_DATA_HOME/metaopt/mlruns.db
    (~/.local/share/metaopt/mlruns.db), artifacts in mlartifacts/ beside it; never the source tree.

    Returns:
      The sqlite file's path (its folder may not exist yet).
    """
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "metaopt" / "mlruns.db"


def tracking_uri(cfg: TrackingConfig) -> str:
    """`tracking.uri`, else $MLFLOW_TRACKING_URI, else the local default store.

    Args:
      cfg: the tracking settings.

    Returns:
      The URI; for the local default, its folder is created.
    """
    if cfg.uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return cfg.uri or os.environ["MLFLOW_TRACKING_URI"]
    store = default_store()
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


def client_for(cfg: TrackingConfig) -> MlflowClient:
    """An MlflowClient on `cfg`'s store, for tracking and the registry (MLflow's INFO logging silenced).

    Args:
      cfg: the tracking settings.

    Returns:
      The client.
    """
    # A new sqlite store logs its schema migration at INFO on stderr; commands print their own lines.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # The client creates a new sqlite store's tables; two processes doing so at once (two jobs
    # started together on a fresh machine) collide ("table ... already exists"). A lock file beside
    # the store lets one create them while the other waits, then finds them.
    with FileLock(f"{uri.removeprefix('sqlite:///')}.lock"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: MlflowClient, cfg: TrackingConfig) -> str:
    """The id of `cfg.experiment`, created if missing (a sqlite store keeps its artifacts beside the
    file).

    Args:
      client: a client on the store.
      cfg: the tracking settings (the experiment's name).

    Returns:
      The experiment id.
    """
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):  # artifacts next to the store file, not in the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(cfg.experiment, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(cfg.experiment).experiment_id


def flat_params(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts and lists -> {dotted key: str(value)}, as MLflow parameters.

    Args:
      data: plain data (a config dump).
      prefix: the dotted key above `data` ("" at the top).

    Returns:
      The flat dict.
    """
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return {prefix: str(data)}
    out: dict[str, str] = {}
    for k, v in items:
        out.update(flat_params(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def log_params(client: MlflowClient, run_id: str, values: dict[str, str]) -> None:
    """Parameters in batches of 100 (MLflow's limit per call), values cut to 6000 characters.

    Args:
      client: a client on the store.
      run_id: the run.
      values: parameter name -> value.
    """
    params = [Param(k, v[:6000]) for k, v in values.items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])


@functools.cache
def code_version() -> str:
    """This checkout's `code_version_of` (cached)."""
    return code_version_of(PROJECT_DIR)


def code_version_of(checkout: Path) -> str:
    """metaopt's version with the git commit when `checkout` has one: "0.1.0+abc1234";
    "0.1.0+abc1234.dirty" when the code (metaopt/, ray_jobs/) differs from that commit, so a
    result made by uncommitted code never names a commit that cannot make it.

    Args:
      checkout: the repository's folder.

    Returns:
      The version string.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True, timeout=5).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(commit) and bool(git("status", "--porcelain", "--untracked-files=no", "--", "metaopt", "ray_jobs"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return f"{__version__}+{commit}{'.dirty' if dirty else ''}" if commit else __version__


class MlflowTracker:
    """Hooks for `meta_train`: `iteration(row)` and `checkpoint(path, iteration)`."""

    def __init__(self, cfg: MetaTrainConfig, config_hash: str, run_id: str | None = None,
                 tags: dict[str, str] | None = None):
        self.cfg, self.tracking = cfg, cfg.tracking
        self.client = client_for(self.tracking)
        if run_id is None:
            exp = experiment_id(self.client, self.tracking)
            run = self.client.create_run(exp, tags={
                "method": cfg.method, "envs": ",".join(cfg.env_names), "config_hash": config_hash,
                "code_version": code_version(), "mlflow.runName": f"{cfg.method}-{'-'.join(cfg.env_names)}",
                **(tags or {}),
            })
            self.run_id = run.info.run_id
            log_params(self.client, self.run_id, flat_params(cfg.dump()))
            self.logged_up_to = 0
        else:
            run = self.client.get_run(run_id)  # raises for an unknown id
            if run.data.tags.get("config_hash") != config_hash:
                raise ValueError(f"run {run_id} has config_hash {run.data.tags.get('config_hash')}, this config has "
                                 f"{config_hash}; resume with the run's own config")
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            history = self.client.get_metric_history(run_id, "iteration")
            self.logged_up_to = int(max((m.value for m in history), default=0))

    def iteration(self, row: dict[str, float]) -> None:
        """Log one iteration's metrics at step = iteration; iterations already logged (before a resume)
        are skipped.

        Args:
          row: the iteration's metrics row, with `iteration`.
        """
        step = int(row["iteration"])
        if step <= self.logged_up_to:
            return  # re-computed after a resume: the same numbers are already there
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in row.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.logged_up_to = step

    def checkpoint(self, path: Path, iteration: int) -> None:
        """Upload a checkpoint file to the run's checkpoints/ artifacts.

        Args:
          path: the checkpoint file.
          iteration: its iteration (unused: the file name holds it).
        """
        self.client.log_artifact(self.run_id, str(path), CHECKPOINT_DIR)

    def checkpoints_removed(self, names: list[str]) -> None:
        """Delete the run's copies too, where the artifact store can delete (local, S3, the
        tracking server's proxied store); elsewhere they stay.

        Args:
          names: the deleted checkpoints' file names.
        """
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri)
        for name in names:
            try:
                repo.delete_artifacts(f"{CHECKPOINT_DIR}/{name}")
            except (NotImplementedError, MlflowException, OSError):
                return

    def download_latest_checkpoint(self, folder: Path) -> Path | None:
        """Download the run's newest checkpoint artifact (for a resume).

        Args:
          folder: where to put it (created if missing).

        Returns:
          The local file; None when the run has no checkpoint.
        """
        found = [(int(m.group(1)), a.path) for a in self.client.list_artifacts(self.run_id, CHECKPOINT_DIR)
                 if (m := CHECKPOINT_NAME.search(a.path))]
        if not found:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        local = self.client.download_artifacts(self.run_id, max(found)[1], str(folder))
        return Path(local)

    def log_outputs(self, meta_params_path: Path, out: Path) -> str:
        """The optimizer (and plot/summary) as artifacts; returns the optimizer's URI.

        Args:
          meta_params_path: the trained meta-parameters file.
          out: the run's folder (meta_training.png, summary.json, config.yaml, metrics.csv if present).

        Returns:
          The artifact URI of the optimizer folder (what `registry.register` takes).
        """
        self.client.log_artifact(self.run_id, str(meta_params_path), OPTIMIZER_DIR)
        for name in ("meta_training.png", "summary.json", "config.yaml", "metrics.csv"):
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))
        return f"{self.client.get_run(self.run_id).info.artifact_uri}/{OPTIMIZER_DIR}"

    def finish(self, failed: bool = False, stopped_after: int | None = None) -> None:
        """End the run: FINISHED, FAILED, or KILLED when stopped early on purpose (`stopped_after`
        iterations; `--resume RUN_ID` continues it).

        Args:
          failed: end FAILED.
          stopped_after: iterations done when stopped on purpose (the run ends KILLED, with a tag);
            None: not stopped.
        """
        if stopped_after is not None:
            self.client.set_tag(self.run_id, "metaopt.stopped_after", str(stopped_after))
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED if failed else RunStatus.FINISHED
        self.client.set_terminated(self.run_id, status=RunStatus.to_string(status))

