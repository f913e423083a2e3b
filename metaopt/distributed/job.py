"""A meta-training job: Ray workers, MLflow run, registration, champion evaluation.

The same function runs inside `ray job submit` (it joins the cluster) and as plain python
(it starts an embedded local Ray). `resume_run_id` continues a run whose driver died, from
its last checkpoint in MLflow: the result is the one an uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from metaopt import registry
from metaopt.config import MetaTrainConfig
from metaopt.distributed.ray_meta import WorkerPool, ray_engine
from metaopt.distributed.resources import keep_driver_on_cpu, ray_options
from metaopt.distributed.retry import get_with_retries
from metaopt.meta.run import MetaRunResult, ProgressFn, config_hash, meta_train
from metaopt.meta.warm_start import load_warm_start
from metaopt.optimizers.learned import load_meta_params
from metaopt.tracking.mlflow_run import MlflowTracker, code_version
from metaopt.training.learned import score

SCORE_RETRIES = 2  # a scoring task whose worker or node dies runs again (distributed.retry)


@dataclass
class JobResult:
    """What `run_meta_job` did: the meta-training run, its MLflow run and model version, the champion
    verdict."""

    run: MetaRunResult
    run_id: str
    model_name: str
    version: str
    promoted: bool
    score: float | None
    champion_score: float | None


def connect_ray(address: str | None = None) -> None:
    """Join a cluster (inside `ray job submit`, RAY_ADDRESS says where) or start a local one.

    Args:
      address: a Ray cluster address; None: $RAY_ADDRESS, else an embedded local Ray. Nothing happens if
        Ray is already initialised.
    """
    if ray.is_initialized():
        return
    # Ray starts its processes by fork + exec, which JAX's at-fork warning cannot tell from a
    # bare fork; nothing of this process runs in the child.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)  # never a stray cluster


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM (`kill`, `ray job stop`) raises KeyboardInterrupt as Ctrl-C
    does, so the caller's cleanup runs; a job started with `&` from a script ignores Ctrl-C and
    is stopped this way. Enter it after `connect_ray`: Ray's driver installs its own SIGTERM
    handler, which aborts the process."""
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_meta_job(
    cfg: MetaTrainConfig,
    out: str | Path,
    *,
    resume_run_id: str | None = None,
    evaluate: bool = True,
    progress: ProgressFn | None = None,
    stop_after: int | None = None,
    address: str | None = None,
) -> JobResult:
    """Meta-training on Ray workers with an MLflow run, then registration of the optimizer
    and (with `evaluate`) the champion comparison as a Ray task.

    Args:
      cfg: the meta-training config (`distributed:` sets the workers).
      out: the run's folder on the driver.
      resume_run_id: continue this MLflow run from its last checkpoint (a driver that died).
      evaluate: compare the new version with `@champion` on fresh seeds and move the alias
        if it wins.
      progress: as in `meta_train`.
      stop_after: end after that many iterations (the run ends KILLED, resumable).
      address: a Ray cluster; None: $RAY_ADDRESS or an embedded local Ray.

    Returns:
      A JobResult: the run, its MLflow id, the registered model name and version, whether it
      became champion and both scores.
    """
    keep_driver_on_cpu()  # the driver asks and tells; the GPUs are the workers'
    out = Path(out)
    digest = config_hash(cfg)
    warm = load_warm_start(cfg)  # before the run exists: a bad source fails in one line
    lineage = {} if warm is None else warm.tags
    tracker = MlflowTracker(cfg, digest, run_id=resume_run_id, tags=lineage)
    if resume_run_id is not None:
        tracker.download_latest_checkpoint(out / "checkpoints")
    connect_ray(address)
    pool = WorkerPool(cfg, cfg.distributed)
    try:
        engine = ray_engine(cfg, pool, None if warm is None else warm.meta_params)
        result = meta_train(cfg, out, engine=engine, progress=progress, hooks=[tracker],
                            resume=resume_run_id is not None, stop_after=stop_after)
    except BaseException:
        tracker.finish(failed=True)
        raise
    finally:
        pool.shutdown()
    if stop_after is not None and stop_after < cfg.iterations:
        tracker.finish(stopped_after=stop_after)  # not left RUNNING; --resume RUN_ID goes on
        return JobResult(result, tracker.run_id, cfg.model_name, "", False, None, None)

    source = tracker.log_outputs(result.meta_params_path, out)
    last = result.history[-1] if result.history else {}
    fitness = last.get("fitness_mean", last.get("meta_loss", float("nan")))
    settings = {k: v for k, v in cfg.optimizer.model_dump(mode="json").items() if k != "meta_params"}
    version = registry.register(cfg.model_name, source, tracker.run_id, {
        "method": cfg.method, "envs": ",".join(cfg.env_names), "fitness": f"{fitness:.6g}",
        "config_hash": digest, "code_version": code_version(), "iterations": str(len(result.history)),
        "optimizer_config": json.dumps(settings), **lineage,
    }, cfg.tracking).version
    promoted, new_score, old_score = False, None, None
    if evaluate:
        gpus = 1.0 if cfg.distributed.gpus_per_worker > 0 else 0.0
        remote_score = ray.remote(score).options(**ray_options(1, gpus), max_retries=0)  # retried below

        def score_uri(uri: str) -> float:  # a Ray task: the driver trains nothing
            path, _, _ = registry.fetch(uri, cfg.tracking)
            meta_params = load_meta_params(path, cfg.method)[1]
            return get_with_retries(lambda: remote_score.remote(cfg, meta_params), SCORE_RETRIES, f"scoring {uri}")

        promoted, new_score, old_score = registry.promote_if_better(cfg.model_name, version, score_uri, cfg.tracking)
    tracker.finish()
    summary: dict[str, Any] = {"run_id": tracker.run_id, "model": cfg.model_name, "version": version,
                               "promoted_to_champion": promoted, "score": new_score, "champion_score": old_score}
    (out / "job.json").write_text(json.dumps(summary, indent=2))
    return JobResult(result, tracker.run_id, cfg.model_name, version, promoted, new_score, old_score)
