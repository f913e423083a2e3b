"""An evaluation plan in MLflow: one parent run for the plan (its config, the summary metrics,
summary.json, table and figures as artifacts) and one child run per finished cell (its
settings, per-seed final returns as the metric `final_return` at step = seed index, and the
cell's results.json, curves.csv and returns.png).

Idempotent: the parent is found by the plan folder it stands for, a cell that already has a
child run of the same config is not recorded again, so a resumed plan adds only new cells.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunStatus

from metaopt.config import EvalPlanConfig
from metaopt.tracking.mlflow_run import client_for, code_version, experiment_id, flat_params, log_params
from metaopt.tracking.sweeps import metric_name

PLAN_TAG, CELL_TAG, HASH_TAG, PARENT_TAG = "metaopt.plan", "metaopt.cell", "metaopt.config_hash", "mlflow.parentRunId"


class PlanTracker:
    """The plan's parent run and its cells' child runs."""

    def __init__(self, plan: EvalPlanConfig, out: Path):
        self.client = client_for(plan.tracking)
        self.experiment = experiment_id(self.client, plan.tracking)
        key = str(Path(out).resolve())
        found = self.client.search_runs([self.experiment], filter_string=f"tags.`{PLAN_TAG}` = '{key}'", max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(self.experiment, tags={
                PLAN_TAG: key, "metaopt.plan_name": plan.name, "metaopt.section": plan.section,
                "code_version": code_version(), "mlflow.runName": f"eval:{plan.name}",
            }).info.run_id
            log_params(self.client, self.run_id, flat_params(plan.model_dump(mode="json")))
        children = self.client.search_runs([self.experiment], filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}'",
                                           max_results=10_000)
        self.recorded = {(r.data.tags.get(CELL_TAG), r.data.tags.get(HASH_TAG)) for r in children}

    def record_cell(self, cell, folder: Path) -> str | None:
        """A child run for a finished cell (its folder holds results.json); None if recorded.

        Args:
          cell: the finished `Cell`.
          folder: the cell's folder.

        Returns:
          The child run's id; None when the cell was already recorded.
        """
        if (cell.key, cell.config_hash) in self.recorded:
            return None
        result = json.loads((folder / "results.json").read_text())
        opt = cell.config.optimizer
        child = self.client.create_run(self.experiment, tags={
            PARENT_TAG: self.run_id, CELL_TAG: cell.key, HASH_TAG: cell.config_hash,
            "mlflow.runName": f"{cell.label} on {cell.env}",
        }).info.run_id
        log_params(self.client, child, {
            "label": cell.label, "env": cell.env, "optimizer": opt.name, "source": cell.source,
            "learning_rate": str(getattr(opt, "learning_rate", "")),
            "seeds": str(cell.config.num_seeds), "seed": str(cell.config.seed),
            "total_timesteps": str(cell.config.agent.total_timesteps),
            "trained_on": "" if cell.trained_on is None else ",".join(cell.trained_on),
        })
        now = int(time.time() * 1000)
        finals = [float("nan") if v is None else float(v) for v in result["final_return"]]
        metrics = [Metric("final_return", v, now, i) for i, v in enumerate(finals)]
        metrics += [Metric(k, float(result[k]), now, 0) for k in ("final_return_mean", "env_steps_per_second")
                    if isinstance(result.get(k), (int, float))]
        self.client.log_batch(child, metrics=metrics)
        for name in ("results.json", "curves.csv", "returns.png"):
            if (folder / name).is_file():
                self.client.log_artifact(child, str(folder / name))
        self.client.set_terminated(child, RunStatus.to_string(RunStatus.FINISHED))
        self.recorded.add((cell.key, cell.config_hash))
        return child

    def finish(self, summary: dict[str, Any] | None = None, artifacts: list[Path] = (), failed: bool = False) -> None:
        """End the parent run: the aggregate metrics of the summary, the artifacts, FINISHED or FAILED.

        Args:
          summary: from `plan_stats.summarise`; None: no metrics.
          artifacts: files to attach (missing ones are skipped).
          failed: end the run FAILED.
        """
        now = int(time.time() * 1000)
        metrics = []
        for label, agg in ((summary or {}).get("aggregate") or {}).items():
            for name in ("normalised_iqm", "normalised_mean", "probability_of_improvement"):
                value = (agg.get(name) or {}).get("value")
                if isinstance(value, (int, float)):
                    metrics.append(Metric(metric_name(f"{label}.{name}"), float(value), now, 0))
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        status = RunStatus.FAILED if failed else RunStatus.FINISHED
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))
