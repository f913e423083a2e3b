"""A Ray Tune sensitivity sweep as users run it: `ray_jobs/tune_sensitivity.py` on an embedded
Ray, 4 trials that each meta-train OPEN (tiny) and evaluate the result, a real sqlite MLflow
store."""

from __future__ import annotations

import math
import subprocess

import pytest
from mlflow import MlflowClient

from tests.sweep_helpers import PROJECT, SENSITIVITY_TINY, child_runs, read_csv, sweep_command

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_sensitivity_sweep_writes_heatmap_csv_and_mlflow(tmp_path):
    out = tmp_path / "sens"
    proc = subprocess.run(sweep_command("tune_sensitivity.py", SENSITIVITY_TINY, out), cwd=PROJECT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("heatmap.png", "tuning_shift.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    returns = [float(r["final_return"]) for r in rows]
    assert all(math.isfinite(v) for v in returns)
    assert len(set(returns)) > 1  # the grid changes the trained optimizer, and so the return
    # Each trial meta-trained for the configured generations in its own folder.
    for r in rows:
        (trial_dir,) = (out / "sensitivity-open-tiny").glob(f"*{r['trial_id']}*")
        assert len(read_csv(trial_dir / "meta" / "metrics.csv")) == 2
    uri = f"sqlite:///{out}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(exp, filter_string="tags.`metaopt.sweep_kind` = 'tune-sensitivity'")
    assert len(child_runs(uri, parent.info.run_id)) == 4
    assert math.isclose(parent.data.metrics["spread"], max(returns) / min(returns), rel_tol=1e-6)
