"""A sweep in MLflow: one parent run (the sweep's config, summary metrics, CSV and figures as
artifacts) and one child run per finished trial (its settings, final metrics and the
metric history it reported).

Recording is idempotent, so a restored sweep records again without duplicates: the parent
is found by the experiment folder it stands for, and a trial that already has a child run
is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunStatus

from metaopt.config import TrackingConfig
from metaopt.tracking.mlflow_run import client_for, code_version, experiment_id, flat_params, log_params

SWEEP_TAG, TRIAL_TAG, PARENT_TAG = "metaopt.sweep", "metaopt.trial_id", "mlflow.parentRunId"


def metric_name(name: str) -> str:
    """MLflow allows letters, digits, '_', '-', '.', ' ' and '/' in metric names.

    Args:
      name: any name.

    Returns:
      The name with other characters replaced by "_" (leading and trailing "_" and spaces stripped).
    """
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name).strip("_ ")


def record_sweep(
    tracking: TrackingConfig,
    *,
    kind: str,
    experiment: str,
    config: dict[str, Any],
    summary: dict[str, float],
    trials: Sequence[dict[str, Any]],
    artifacts: Sequence[Path],
) -> str:
    """Record a sweep in MLflow: the parent run, a child run per trial not yet recorded,
    the summary metrics and the artifacts; the runs end FINISHED (a failed trial FAILED).

    Args:
      tracking: the store and experiment.
      kind: the sweep's kind, e.g. "tune-baselines" (a tag and the run name's prefix).
      experiment: the sweep's Ray Tune folder (absolute) or URI; it identifies the parent run.
      config: the sweep's config as plain data (logged as parameters).
      summary: metric name -> value for the parent run.
      trials: dicts with trial_id, name, status, params (dict), metrics (dict of final
        values) and history (list of (step, {name: value})).
      artifacts: files to attach to the parent run (missing ones are skipped).

    Returns:
      The parent run id.
    """
    client = client_for(tracking)
    exp = experiment_id(client, tracking)
    key = experiment
    found = client.search_runs([exp], filter_string=f"tags.`{SWEEP_TAG}` = '{key}'", max_results=1)
    if found:
        parent = found[0].info.run_id
        client.update_run(parent, status="RUNNING")
    else:
        parent = client.create_run(exp, tags={
            SWEEP_TAG: key, "metaopt.sweep_kind": kind, "code_version": code_version(),
            "mlflow.runName": f"{kind}:{experiment.rstrip('/').rsplit('/', 1)[-1]}",
        }).info.run_id
        log_params(client, parent, flat_params(config))
    children = client.search_runs([exp], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=10_000)
    recorded = {r.data.tags.get(TRIAL_TAG) for r in children}
    for trial in trials:
        if trial["trial_id"] in recorded:
            continue
        child = client.create_run(exp, tags={
            PARENT_TAG: parent, TRIAL_TAG: trial["trial_id"], "status": trial["status"],
            "mlflow.runName": trial["name"],
        }).info.run_id
        log_params(client, child, {k: str(v) for k, v in trial["params"].items()})
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in trial["metrics"].items()]
        metrics += [Metric(k, float(v), now, int(step)) for step, row in trial["history"] for k, v in row.items()]
        for i in range(0, len(metrics), 1000):
            client.log_batch(child, metrics=metrics[i:i + 1000])
        client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED if trial["status"] != "failed" else RunStatus.FAILED))
    now = int(time.time() * 1000)
    client.log_batch(parent, metrics=[Metric(metric_name(k), float(v), now, 0) for k, v in summary.items()])
    for path in artifacts:
        if path.is_file():
            client.log_artifact(parent, str(path))
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
    return parent
