"""The deployed topology as processes on loopback (docker/compose.yaml and docker/cluster.yaml
without Docker): PostgreSQL, an S3 server (moto, standing in for S3 or MinIO), an `mlflow
server` on PostgreSQL that keeps the artifacts in the bucket, a Ray head with token auth and a
second Ray node with its own CPU, both with the bucket's endpoint and keys in their environment
(as cluster.yaml sets them). Jobs go in through `ray job submit` and record over HTTP: a
meta-training registers its optimizer and sets `@champion` with actors on both nodes, another
process pulls `models:/NAME@champion` through the server, a Tune baseline sweep keeps its
experiment in the bucket (and resumes from it) and writes its tuned file into the folder it is
given and into MLflow, and an evaluation plan's cells become MLflow child runs whose artifacts
the server holds."""

from __future__ import annotations

import json
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
from tests.helpers import PROJECT, free_port, free_ports

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = str(Path(sys.executable).parent / "ray")


def _postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl), the newest version installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, loopback only); its URI."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL's server is not installed (apt-get install postgresql; .ci/run does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                                 f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        subprocess.run(_as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                     "mlflow"]), check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


BUCKET = "metaopt"


@pytest.fixture(scope="module")
def s3():
    """A local S3 server (moto) with one bucket; the environment that points clients at it
    (boto3 and pyarrow both read AWS_ENDPOINT_URL) and a boto3 client."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "metaopt-test",
           "AWS_SECRET_ACCESS_KEY": "metaopt-test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_DEFAULT_REGION"])
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert server.poll() is None and time.time() < deadline, "moto_server did not start"
                time.sleep(0.5)
        yield env, client
    finally:
        server.terminate()
        server.wait(timeout=30)


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def mlflow_server(postgres, s3):
    """`mlflow server` on PostgreSQL, serving artifacts it keeps in the bucket; its URL."""
    art = Path(tempfile.mkdtemp(prefix="mlart", dir="/tmp"))
    port = free_port()
    log = (art.parent / f"{art.name}.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", postgres, "--serve-artifacts", "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **s3[0]},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    assert answer.status == 200
                break
            except OSError:  # not up yet
                assert server.poll() is None, Path(log.name).read_text()[-3000:]
                assert time.time() < deadline, Path(log.name).read_text()[-3000:]
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        Path(log.name).unlink()
        shutil.rmtree(art, ignore_errors=True)


@pytest.fixture(scope="module")
def head(s3):
    """A Ray head on 127.0.0.1 with token auth and one CPU, and a second node (another raylet
    with one CPU of its own) joined to it, both with the bucket's endpoint and keys; the
    dashboard (job server) address and the env."""
    # Short: Ray's unix sockets live under it (107-character limit); pytest's paths are long.
    tmp = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           # the job's `python` is this environment's, whatever PATH the test runner had
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **s3[0]}
    env.pop("RAY_ADDRESS", None)
    # Free ports, not the defaults: a local Ray of another test process (ray.init) may hold
    # the default agent port 52365, and this node's agent would not start. All chosen at once,
    # so the two nodes never get the same one (a node's agent binds after `ray start` returns).
    ports = iter(free_ports(8))
    dashboard, gcs = next(ports), next(ports)

    def node_ports() -> list[str]:
        return [f"--dashboard-agent-listen-port={next(ports)}", f"--metrics-export-port={next(ports)}",
                f"--runtime-env-agent-port={next(ports)}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                "--disable-usage-stats"]

    started = subprocess.run(
        [RAY, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--include-dashboard=true", f"--temp-dir={tmp}", *node_ports()],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        # Its own temporary folder, as on another machine: two nodes unpacking a job's working
        # directory into the same folder would replace files under each other's processes.
        joined = subprocess.run([RAY, "start", f"--address=127.0.0.1:{gcs}", f"--temp-dir={tmp}/node2", *node_ports()],
                                env=env, capture_output=True, text=True, timeout=180)
        assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        _stop_cluster(tmp, gcs)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_cluster(temp_dir: str, gcs_port: int) -> None:
    """Stop this cluster only: `ray stop` would stop every Ray cluster on the machine,
    including the one another test file's process is using at the same time."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if temp_dir in cmdline or f"127.0.0.1:{gcs_port}" in cmdline:
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


def _state(head, kind: str, *filters: str) -> list[dict]:
    """`ray list KIND` on the cluster (with its token), as dicts."""
    address, env = head
    cmd = [RAY, "list", kind, "--address", address, "--format", "json", "--detail", "--limit", "1000"]
    for f in filters:
        cmd += ["--filter", f]
    listed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    return json.loads(listed.stdout)


def test_two_nodes_joined(head):
    nodes = _state(head, "nodes", "state=ALIVE")
    assert len(nodes) == 2 and sorted(n["is_head_node"] for n in nodes) == [False, True]


def test_meta_training_job_records_over_http_and_another_process_pulls_the_champion(head, mlflow_server, s3,
                                                                                     tmp_path):
    address, env = head
    url = mlflow_server
    _submit(address, env, "ray_jobs/meta_train.py", "--config", "configs/meta/open_breakout_smoke.yaml",
            "--out", str(tmp_path / "out"), "--iterations", "2", "--set", f"tracking.uri={url}",
            "--set", "tracking.model_name=open-topology", "--set", "distributed.workers=2",
            "--init", "published:breakout")
    from mlflow import MlflowClient

    from metaopt import registry

    # The two workers (one CPU each) filled both nodes: the job used the second node.
    actors = _state(head, "actors", "class_name=MetaWorker")
    assert len({a["node_id"] for a in actors}) == 2, [(a["node_id"], a["state"]) for a in actors]

    tracking = TrackingConfig(uri=url)
    version = registry.model_version("models:/open-topology@champion", tracking)
    assert version.tags["method"] == "open" and version.tags["envs"] == "breakout"
    client = MlflowClient(url)
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # stored by the server, not the job
    assert run.data.tags["init_from"] == "published:breakout"
    iterations = client.get_metric_history(version.run_id, "fitness_mean")
    assert sorted(m.step for m in iterations) == [1, 2]
    assert any(k.endswith("/meta_params.safetensors") for k in _keys(s3[1], "mlflow/"))  # in the bucket

    # Another process, with an empty download cache, pulls the champion through the server.
    home = tmp_path / "home"
    home.mkdir()
    pulled = tmp_path / "pulled.safetensors"
    metaopt = str(Path(sys.executable).parent / "metaopt")
    done = subprocess.run([metaopt, "pull", "models:/open-topology@champion", "--out", str(pulled)],
                          env={**os.environ, "HOME": str(home), "MLFLOW_TRACKING_URI": url},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert pulled.read_bytes() == (tmp_path / "out" / "meta_params.safetensors").read_bytes()


def test_tune_baselines_job_keeps_its_experiment_in_the_bucket_and_the_tuned_file_where_told(head, mlflow_server, s3,
                                                                                              tmp_path):
    address, env = head
    url = mlflow_server
    # No tuned_file: the default (configs/tuned/, relative) would land in the job's temporary
    # copy of the repo, so the job writes it into its --out instead.
    tuned = tmp_path / "out" / "tuned_baselines.yaml"
    args = ("ray_jobs/tune_baselines.py", "--config", "configs/tune/baselines_tiny.yaml", "--out", str(tmp_path / "out"),
            "--set", f"tracking.uri={url}", "--set", "optimizers=[adam]", "--set", f"storage=s3://{BUCKET}/tune")
    _submit(address, env, *args)
    # Tune's experiment (state and trial folders) is in the bucket, not in --out
    experiment = _keys(s3[1], "tune/baselines-tiny/")
    assert any("experiment_state" in k for k in experiment), experiment
    assert sum(k.endswith("/progress.csv") for k in experiment) == 2
    assert not (tmp_path / "out" / "baselines-tiny").exists()
    # The same command again restores the experiment from the bucket: nothing runs twice (no
    # trial's progress.csv is written again).
    def etags():
        return {o["Key"]: o["ETag"] for page in s3[1].get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="tune/baselines-tiny/") for o in page.get("Contents", []) if o["Key"].endswith("progress.csv")}

    before = etags()
    again = _submit(address, env, *args)
    assert f"resuming s3://{BUCKET}/tune/baselines-tiny: 2 of 2 trials already finished" in again.stdout + again.stderr
    assert etags() == before
    from mlflow import MlflowClient

    from metaopt.config import load_train_config

    assert load_train_config(env="breakout", optimizer="adam:tuned", tuned_file=tuned).optimizer.learning_rate in (1e-3, 1e-2)
    assert len((tmp_path / "out" / "trials.csv").read_text().splitlines()) == 3  # header + 2 learning rates
    # The sweep's parent run (the tuned file among its artifacts, held by the server) and one
    # child run per trial.
    client = MlflowClient(url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [sweep] = client.search_runs(experiments, filter_string="tags.`metaopt.sweep_kind` = 'tune-baselines'")
    assert sweep.info.status == "FINISHED" and sweep.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {a.path for a in client.list_artifacts(sweep.info.run_id)} >= {"tuned_baselines.yaml", "trials.csv"}
    trials = client.search_runs(experiments, filter_string=f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'")
    assert sorted(t.data.params["learning_rate"] for t in trials) == ["0.001", "0.01"]


def test_evaluation_plan_job_records_its_cells_as_child_runs_on_the_server(head, mlflow_server, tmp_path):
    address, env = head
    url = mlflow_server
    out = tmp_path / "eval"
    # One cell (Adam on Breakout): tests/test_plan.py covers plans; this is the path through the server.
    _submit(address, env, "ray_jobs/evaluate.py", "--plan", "configs/eval/tiny.yaml", "--out", str(out),
            "--set", f"tracking.uri={url}", "--set", "envs=[breakout]", "--set", "optimizers=[adam]",
            "--set", "resources.cpus_per_cell=1")
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parent = client.search_runs(experiments, filter_string=f"tags.`metaopt.plan` = '{out}'")[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs(experiments, filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert [c.data.params["label"] for c in children] == ["adam"]
    for child in children:
        local = json.loads((out / "cells" / child.data.params["label"] / "breakout" / "results.json").read_text())
        served = download_artifacts(run_id=child.info.run_id, artifact_path="results.json", tracking_uri=url,
                                    dst_path=str(tmp_path / child.info.run_id))
        assert json.loads(Path(served).read_text())["final_return"] == local["final_return"]
    assert (out / "summary.json").is_file()


def test_ray_job_submit_with_a_wrong_token_is_refused_by_the_server(head):
    address, env = head
    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # reaches the server, which must refuse it
    job = subprocess.run([RAY, "job", "list", "--address", address], env=wrong, capture_output=True, text=True,
                         timeout=120)
    assert job.returncode != 0
    said = (job.stdout + job.stderr).lower()
    assert "token is invalid or incorrect" in said, said[-2000:]  # the server checked it and said no
    assert "raysubmit_" not in said  # no job listed
