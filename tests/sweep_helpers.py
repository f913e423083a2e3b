"""Shared by the Ray Tune sweep tests (two files, so that pytest-xdist runs the two slow
sweeps in parallel)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from mlflow import MlflowClient

from metaopt.tracking.sweeps import PARENT_TAG
from tests.helpers import PROJECT  # noqa: F401  (re-exported for the sweep tests)

BASELINES_TINY = "configs/tune/baselines_tiny.yaml"
SENSITIVITY_TINY = "configs/tune/sensitivity_open_tiny.yaml"


def sweep_command(script: str, config: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, f"ray_jobs/{script}", "--config", config, "--out", str(out),
            "--set", f"tracking.uri=sqlite:///{out}/mlruns.db", *extra]


def finished_results(experiment: Path) -> dict[str, str]:
    """Trial folder -> its result.json, for trials that reported a final return."""
    return {p.parent.name: p.read_text() for p in experiment.glob("*/result.json") if "final_return" in p.read_text()}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def child_runs(uri: str, parent: str):
    client = MlflowClient(tracking_uri=uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exp, filter_string=f"tags.`{PARENT_TAG}` = '{parent}'")
