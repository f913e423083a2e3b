"""The MLflow model registry as users see it: register, alias, load, train, pull; clear
errors for bad URIs, missing aliases and broken artifacts; a shared `mlflow server`."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt import registry
from metaopt.cli import main
from metaopt.config import OpenConfig, PPOConfig, TrackingConfig
from metaopt.optimizers import build_optimizer, optim4rl
from metaopt.optimizers.learned import load_meta_params, save_meta_params
from metaopt.tracking.mlflow_run import code_version_of
from tests.helpers import WEIGHTS, free_port


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "CACHE", tmp_path / "cache")
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlruns.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.uri)
    return cfg


@pytest.mark.slow
def test_round_trip_register_alias_load_train(tracking, tmp_path, capsys):
    version = registry.import_open(WEIGHTS / "breakout_OPEN.npy", "open-published", tracking)
    assert str(version.version) == "1" and version.tags["method"] == "open"
    # latest follows the newest version by itself; champion is ours to move.
    promoted, score, old = registry.promote_if_better("open-published", "1", lambda uri: 1.0, tracking)
    assert promoted and old is None
    optimizer = registry.load("models:/open-published@champion", tracking)
    # The served optimizer steps exactly as OPEN built from the published file does.
    direct = build_optimizer(OpenConfig(meta_params=str(WEIGHTS / "breakout_OPEN.npy")), PPOConfig())
    params = {"actor": {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)}, "critic": {"b": jnp.full(4, 0.5)}}
    grads = jax.tree.map(lambda p: 0.1 * jnp.cos(p + 1.0), params)
    served, expected = (opt.update(grads, opt.init(params), params, training_progress=0.3, key=jax.random.key(4))[0]
                        for opt in (optimizer, direct))
    for a, b in zip(jax.tree.leaves(served), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert any(np.abs(np.asarray(a)).max() > 0 for a in jax.tree.leaves(served))
    _, published = load_meta_params(WEIGHTS / "breakout_OPEN.npy")
    _, pulled = registry.load_meta_params("models:/open-published@latest", tracking)
    for a, b in zip(np.concatenate([np.ravel(x) for x in _leaves(published)]),
                    np.concatenate([np.ravel(x) for x in _leaves(pulled)])):
        assert a == b
    out = tmp_path / "pulled.safetensors"
    assert main(["pull", "models:/open-published@champion", "--out", str(out)]) == 0
    assert load_meta_params(out, "open")[0] == "open"
    rc = main(["train", "--env", "breakout", "--optimizer", "models:/open-published@champion", "--total-steps", "1024",
               "--set", "ppo.num_envs=8", "--set", "ppo.num_steps=16", "--set", "ppo.num_minibatches=2",
               "--out", str(tmp_path / "train")])
    assert rc == 0 and (tmp_path / "train" / "results.json").is_file()


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_champion_moves_only_for_a_better_version(tracking):
    scores = {"1": 5.0, "2": 3.0, "3": 7.0}
    for v in ("1", "2", "3"):
        registry.import_open(WEIGHTS / "breakout_OPEN.npy", "open-champ", tracking)
        promoted, _, _ = registry.promote_if_better("open-champ", v, lambda uri: scores[uri.rsplit("/", 1)[1]], tracking)
        assert promoted == (v != "2")
    assert str(registry.model_version("models:/open-champ@champion", tracking).version) == "3"
    assert str(registry.model_version("models:/open-champ@latest", tracking).version) == "3"


def test_a_failing_store_stops_the_promotion_and_keeps_the_champion(tracking, monkeypatch):
    """Only a model without the alias has no champion: a store error while looking it up stops
    the promotion with its cause, and the champion stays where it was."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    for _ in range(2):
        registry.import_open(WEIGHTS / "breakout_OPEN.npy", "open-keep", tracking)
    assert registry.promote_if_better("open-keep", "1", lambda uri: 1.0, tracking)[0]

    def failing(self, name):
        raise MlflowException("the store is down for a moment", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(MlflowClient, "get_registered_model", failing)
    with pytest.raises(MlflowException, match="down for a moment"):
        registry.promote_if_better("open-keep", "2", lambda uri: 2.0, tracking)
    monkeypatch.undo()
    assert str(registry.model_version("models:/open-keep@champion", tracking).version) == "1"


@pytest.mark.parametrize("uri, fix", [
    ("models:/open-breakout", "not a model URI"),
    ("runs:/abc/optimizer", "not a model URI"),
    ("models:/open breakout@champion", "not a model URI"),
    ("models:/nope@champion", "no alias 'champion' of model 'nope'"),
])
def test_bad_uris_and_missing_models_are_one_line(tracking, uri, fix, capsys, tmp_path):
    with pytest.raises(registry.RegistryError, match=fix):
        registry.fetch(uri, tracking)
    assert main(["pull", uri, "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fix in err


def _register_file(tracking, tmp_path, name: str, content: Path) -> str:
    from metaopt.tracking.mlflow_run import OPTIMIZER_DIR, client_for, experiment_id

    client = client_for(tracking)
    run = client.create_run(experiment_id(client, tracking))
    client.log_artifact(run.info.run_id, str(content), OPTIMIZER_DIR)
    return registry.register(name, f"{run.info.artifact_uri}/{OPTIMIZER_DIR}", run.info.run_id, {}, tracking).version


@pytest.mark.parametrize("kind, fix", [("corrupt", "not a readable safetensors"), ("wrong_size", "expected float32")])
def test_broken_artifacts_are_refused(tracking, tmp_path, kind, fix):
    path = tmp_path / kind / registry.META_FILE
    path.parent.mkdir()
    if kind == "corrupt":
        path.write_bytes(b"\x00garbage" * 50)
    else:
        import jax

        params = optim4rl.init_meta_params(jax.random.key(0))
        params["rnn_m"]["out"]["kernel"] = np.zeros((3, 1), np.float32)  # hidden 8 expects (8, 1)
        save_meta_params(path, "optim4rl", params)
    version = _register_file(tracking, tmp_path, f"broken-{kind.replace('_', '-')}", path)
    with pytest.raises(registry.RegistryError, match=fix):
        registry.load(f"models:/broken-{kind.replace('_', '-')}/{version}", tracking)
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # nothing broken stays cached



LOGGER = """
import sys
from mlflow import MlflowClient
from mlflow.entities import Metric
client = MlflowClient(sys.argv[1])
run_id, name = sys.argv[2], sys.argv[3]
for step in range(200):
    client.log_batch(run_id, metrics=[Metric(name, float(step), 0, step)])
"""


@pytest.mark.slow
def test_mlflow_server_shared_by_two_processes_loses_no_metric(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--default-artifact-root", str(tmp_path / "art"),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        deadline = time.time() + 90
        while True:
            try:
                exp = client.create_experiment("shared")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline:
                    raise
                time.sleep(1)
        run_id = client.create_run(exp).info.run_id
        writers = [subprocess.Popen([sys.executable, "-c", LOGGER, uri, run_id, f"m{i}"]) for i in range(2)]
        assert [w.wait(timeout=300) for w in writers] == [0, 0]
        for i in range(2):
            steps = sorted(m.step for m in client.get_metric_history(run_id, f"m{i}"))
            assert steps == list(range(200))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _open_store(uri: str, barrier) -> None:
    from metaopt.tracking.mlflow_run import client_for

    barrier.wait()  # every process is up: they open the new store together
    client_for(TrackingConfig(uri=uri)).search_experiments()


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_store_together_all_go_on(tmp_path):
    """Jobs started together on a fresh machine create a new store's tables at the same moment;
    without the store's lock one of them failed ("table ... already exists")."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_open_store, args=(f"sqlite:///{tmp_path}/new.db", barrier)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]


def test_cache_keeps_stores_apart(tmp_path, monkeypatch):
    """Version 1 of the same name in two stores: each fetch returns its own store's file."""
    import jax

    from metaopt.optimizers import open as open_opt

    monkeypatch.setattr(registry, "CACHE", tmp_path / "cache")
    flats = []
    for i in range(2):
        store = TrackingConfig(uri=f"sqlite:///{tmp_path}/store{i}.db")
        flat = np.asarray(open_opt.ravel(open_opt.init_meta_params(jax.random.key(i))))
        np.save(tmp_path / f"w{i}.npy", flat)
        registry.import_open(tmp_path / f"w{i}.npy", "same-name", store)
        flats.append(flat)
    for i in range(2):
        store = TrackingConfig(uri=f"sqlite:///{tmp_path}/store{i}.db")
        _, params = registry.load_meta_params("models:/same-name/1", store)
        np.testing.assert_array_equal(np.asarray(open_opt.ravel(params)), flats[i])


def test_code_version_names_the_commit_and_marks_uncommitted_code(tmp_path):
    """A result made by code that differs from HEAD (metaopt/, ray_jobs/) says so; other files
    (results, notes) and untracked files do not make the code dirty."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "metaopt").mkdir()
    (tmp_path / "metaopt" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("n\n")
    git("add", ".")
    git("commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert code_version_of(tmp_path).endswith(f"+{head}")
    (tmp_path / "notes.md").write_text("changed\n")
    (tmp_path / "metaopt" / "new.py").write_text("y = 2\n")
    assert code_version_of(tmp_path).endswith(f"+{head}")
    (tmp_path / "metaopt" / "a.py").write_text("x = 2\n")
    assert code_version_of(tmp_path).endswith(f"+{head}.dirty")
