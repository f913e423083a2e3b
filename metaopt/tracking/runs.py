"""`train` and `compare` in MLflow: one run per trained optimizer (experiment `metaopt-train`)
with the resolved config as params, the per-update mean return over seeds and each seed's
final return as metrics, and the run's files (results.json, curves.csv, the plot) as
artifacts. A comparison's runs share the tag `metaopt.out` (its folder)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, RunStatus

from metaopt.config import TrackingConfig
from metaopt.tracking.mlflow_run import client_for, code_version, experiment_id, flat_params, log_params
from metaopt.training.runs import RunResult

EXPERIMENT = "metaopt-train"


def record_training(results: Sequence[RunResult], out: Path, tracking: TrackingConfig, command: str,
                    comparison: bool) -> list[str]:
    """One MLflow run per result; returns their ids.

    Args:
      results: the trainings, as `run_training` returns them.
      out: the folder their files were written to (write_run's layout).
      tracking: where to record (its experiment is replaced by `metaopt-train` unless set).
      command: `train` or `compare`.
      comparison: whether `out` holds one sub-folder per result.

    Returns:
      The runs' ids, in `results` order.
    """
    if tracking.experiment == TrackingConfig().experiment:
        tracking = tracking.model_copy(update={"experiment": EXPERIMENT})
    client = client_for(tracking)
    exp = experiment_id(client, tracking)
    ids = []
    for result in results:
        run_id = client.create_run(exp, tags={
            "mlflow.runName": f"{result.label} on {result.config.env.name}", "metaopt.command": command,
            "metaopt.out": str(Path(out).resolve()), "code_version": code_version(),
        }).info.run_id
        log_params(client, run_id, flat_params(result.config.model_dump(mode="json")))
        now = int(time.time() * 1000)
        with np.errstate(all="ignore"):
            curve = np.nanmean(result.metrics["episode_return"], axis=0)
        metrics = [Metric("return_mean", float(v), now, int(step)) for step, v in zip(result.steps_axis, curve)
                   if np.isfinite(v)]
        finals = result.final_returns()
        metrics += [Metric("final_return", float(v), now, i) for i, v in enumerate(finals) if np.isfinite(v)]
        metrics += [Metric("env_steps_per_second", float(result.env_steps_per_second), now, 0)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        folder = Path(out) / result.label if comparison else Path(out)
        for name in ("results.json", "curves.csv"):
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        if (Path(out) / "returns.png").is_file():
            client.log_artifact(run_id, str(Path(out) / "returns.png"))
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        ids.append(run_id)
    return ids
