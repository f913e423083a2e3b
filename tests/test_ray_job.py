"""`ray start --head` with token authentication, then `ray job submit` of a smoke config (the
job succeeds and registers a model in the MLflow store it was pointed at) and of a tiny
baseline sweep (Ray Tune inside a job)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from metaopt.config import TrackingConfig
from tests.helpers import PROJECT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = str(Path(sys.executable).parent / "ray")



@pytest.fixture(scope="module")
def head():
    """A Ray head on 127.0.0.1 with token auth; its dashboard (job server) address."""
    # Short: Ray's unix sockets live under it (107-character limit); pytest's paths are long.
    tmp = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           # the job's `python` is this environment's, whatever PATH the test runner had
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    dashboard = free_port()
    started = subprocess.run(
        [RAY, "start", "--head", f"--port={free_port()}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
         f"--temp-dir={tmp}",
         # Free ports, not the defaults: a local Ray of another test process (ray.init) may
         # hold the default agent port 52365, and this head's job agent would not start.
         f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    yield f"http://127.0.0.1:{dashboard}", env
    _stop_cluster(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def _stop_cluster(temp_dir: str) -> None:
    """Stop this cluster only: `ray stop` would stop every Ray cluster on the machine,
    including the one another test file's process is using at the same time."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(p.info["cmdline"] or []):
            procs += [p, *p.children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def _submit(address: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(PROJECT), "--", "python", *args]
    for _ in range(40):  # the head's job agent may still be starting on a loaded machine
        job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in job.stderr + job.stdout:
            break
        time.sleep(3)
    assert job.returncode == 0 and "succeeded" in job.stdout + job.stderr, job.stdout[-3000:] + job.stderr[-3000:]
    return job


def test_ray_job_submit_meta_train_registers_a_model(head, tmp_path):
    address, env = head
    store = f"sqlite:///{tmp_path}/mlruns.db"
    _submit(address, env, "ray_jobs/meta_train.py", "--config", "configs/meta/open_breakout_smoke.yaml",
            "--out", str(tmp_path / "out"), "--iterations", "2", "--no-eval", "--set", f"tracking.uri={store}",
            "--set", "tracking.model_name=open-job-test", "--init", "published:breakout")
    from mlflow import MlflowClient

    from metaopt import registry

    version = registry.model_version("models:/open-job-test@latest", TrackingConfig(uri=store))
    assert version.tags["method"] == "open" and version.tags["envs"] == "breakout"
    assert (tmp_path / "out" / "meta_params.safetensors").is_file()
    # A warm start's lineage on the registered version and on the MLflow run
    run_tags = MlflowClient(store).get_run(version.run_id).data.tags
    for tags in (version.tags, run_tags):
        assert tags["init_from"] == "published:breakout" and tags["init_resolved"].endswith("breakout_OPEN.npy")


def test_ray_job_submit_tune_baselines_writes_the_tuned_file(head, tmp_path):
    address, env = head
    # No tuned_file: the default (configs/tuned/, relative) would land in the job's temporary
    # copy of the repo, so the job writes it into its --out instead.
    tuned = tmp_path / "out" / "tuned_baselines.yaml"
    _submit(address, env, "ray_jobs/tune_baselines.py", "--config", "configs/tune/baselines_tiny.yaml",
            "--out", str(tmp_path / "out"), "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
            "--set", "optimizers=[adam]")
    from metaopt.config import load_train_config

    assert load_train_config(env="breakout", optimizer="adam:tuned", tuned_file=tuned).optimizer.learning_rate in (1e-3, 1e-2)
    assert len((tmp_path / "out" / "trials.csv").read_text().splitlines()) == 3  # header + 2 learning rates


def test_ray_job_submit_without_the_token_is_refused(head):
    address, env = head
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    no_token["RAY_AUTH_TOKEN_PATH"] = "/nonexistent/token"
    job = subprocess.run([RAY, "job", "list", "--address", address], env=no_token, capture_output=True, text=True,
                         timeout=120)
    assert job.returncode != 0
    said = (job.stdout + job.stderr).lower()
    assert "token" in said or "auth" in said or "unauthenticated" in said, said[-2000:]
