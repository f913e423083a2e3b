"""Meta-training on a real local Ray cluster with a real MLflow store: same numbers as one
process whatever the workers, killed or hung workers and a killed driver change nothing."""

from __future__ import annotations

import os
import signal
import threading

import pytest

ray = pytest.importorskip("ray")

from metaopt.config import CONFIG_DIR, load_meta_config  # noqa: E402
from metaopt.distributed.job import run_meta_job  # noqa: E402
from metaopt.distributed.ray_meta import WorkerPool, ray_engine  # noqa: E402
from metaopt.meta.run import meta_train  # noqa: E402
from tests.helpers import assert_same_run, assert_same_state, metrics_only  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ITERATIONS = 3


def smoke(method: str, tmp, **overrides):
    return load_meta_config(CONFIG_DIR / "meta" / f"{method}_breakout_smoke.yaml", {
        "iterations": ITERATIONS, "checkpoint_every": 1, "tracking.uri": f"sqlite:///{tmp}/mlruns.db",
        # Half a CPU each: the module pool and a job's own pool fit on 2 cores together.
        "distributed.cpus_per_worker": 0.5, **overrides,
    })


class SignalDuringSecondIteration:
    """A hook that sends `sig` to a worker process just after the first iteration, so the
    second iteration's piece on that worker fails (SIGKILL) or hangs (SIGSTOP)."""

    def __init__(self, pid: int, sig: int, delay: float = 0.3):
        self.pid, self.sig, self.delay = pid, sig, delay

    def iteration(self, row):
        if row["iteration"] == 1:  # the second iteration starts right after this
            threading.Timer(self.delay, os.kill, (self.pid, self.sig)).start()

    def checkpoint(self, path, iteration):
        pass


def sharing(cfg, pool: WorkerPool, **distributed):
    """The config with these `distributed` fields, and a pool on the module pool's compiled actors."""
    cfg = cfg.model_copy(update={"distributed": cfg.distributed.model_copy(update=distributed)})
    return cfg, WorkerPool(cfg, cfg.distributed, actors=list(pool.actors))


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module", params=["open", "optim4rl"])
def method_setup(request, cluster, store, tmp_path_factory):
    """The single-process run, and a pool of 2 compiled workers to reuse, each pinned to its
    own core (so the equality tests also say that pinning changes no number)."""
    cfg = smoke(request.param, store, **{"distributed.workers": 2, "distributed.pin_cpus": True})
    reference = meta_train(cfg, tmp_path_factory.mktemp(f"{request.param}_single"))
    pool = WorkerPool(cfg, cfg.distributed)
    yield request.param, cfg, reference, pool
    pool.shutdown()


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_equals_single_process(method_setup, workers, tmp_path):
    _, cfg, reference, pool = method_setup
    shared = WorkerPool(cfg, cfg.distributed, actors=pool.actors[:workers])
    result = meta_train(cfg, tmp_path, engine=ray_engine(cfg, shared))
    assert_same_run(reference, result)
    assert result.history[-1]["worker_restarts"] == 0


def test_killed_worker_changes_nothing(method_setup, tmp_path):
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("the retry path (WorkerPool.run) is method-independent; ES is cheaper")
    victim = pool.pids()[0]
    result = meta_train(cfg, tmp_path, engine=ray_engine(cfg, pool), hooks=[SignalDuringSecondIteration(victim, signal.SIGKILL)])
    assert result.history[-1]["worker_restarts"] >= 1
    assert victim not in pool.pids()
    assert_same_run(reference, result)


def test_hung_worker_is_replaced_after_the_timeout(method_setup, tmp_path):
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("one method is enough for the timeout path")
    hung, shared = sharing(cfg, pool, piece_timeout_s=8.0)
    victim = shared.pids()[1]
    try:
        result = meta_train(hung, tmp_path, engine=ray_engine(hung, shared),
                            hooks=[SignalDuringSecondIteration(victim, signal.SIGSTOP, delay=0.1)])
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:  # killed and replaced, as it should be
            pass
    assert result.history[-1]["worker_restarts"] >= 1
    assert_same_run(reference, result)
    pool.actors = shared.actors  # keep the fixture's pool usable


def test_killed_driver_resumes_from_mlflow(method_setup, tmp_path):
    method, cfg, reference, _ = method_setup
    if method != "open":
        pytest.skip("the resume path is method-independent; ES is cheaper")
    # Each job starts (and compiles in) its own pool: one worker is enough, as the results
    # do not depend on the worker count (test_ray_equals_single_process).
    cfg = cfg.model_copy(update={"distributed": cfg.distributed.model_copy(update={"workers": 1})})
    first = run_meta_job(cfg, tmp_path / "first", stop_after=2, evaluate=False)  # the driver "dies" here
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking.uri)
    stopped = client.get_run(first.run_id)
    assert stopped.info.status == "KILLED" and stopped.data.tags["metaopt.stopped_after"] == "2"
    resumed = run_meta_job(cfg, tmp_path / "second", resume_run_id=first.run_id, evaluate=False)
    assert resumed.run_id == first.run_id and resumed.run.resumed_from == 2
    assert_same_state(reference, resumed.run)  # a fresh --out: its metrics.csv starts at the checkpoint
    assert metrics_only(resumed.run.history) == metrics_only(reference.history[2:])
    assert client.get_run(first.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(first.run_id, "fitness_mean")]
    assert sorted(steps) == list(range(1, ITERATIONS + 1))  # every iteration logged once
    version = client.get_model_version(cfg.model_name, resumed.version)
    assert version.tags["method"] == "open" and version.tags["config_hash"]



def test_lost_worker_without_a_free_slot_leaves_its_pieces_to_the_live_one(method_setup, tmp_path, monkeypatch):
    """A worker dies and the cluster cannot place a replacement (here: it asks for a resource
    no node has, as a lost GPU node would leave it): the run finishes on the live worker with
    the same numbers."""
    method, cfg, reference, pool = method_setup
    if method != "open":
        pytest.skip("the retry path (WorkerPool.run) is method-independent; ES is cheaper")
    short, shared = sharing(cfg, pool, replacement_timeout_s=5.0)
    victim = shared.pids()[0]
    placeable = WorkerPool._actor_options
    monkeypatch.setattr(WorkerPool, "_actor_options",
                        lambda self, index: {**placeable(self, index), "resources": {"node_that_was_lost": 1}})
    result = meta_train(short, tmp_path, engine=ray_engine(short, shared),
                        hooks=[SignalDuringSecondIteration(victim, signal.SIGKILL)])
    assert shared.live() == [1] and result.history[-1]["worker_restarts"] >= 1
    assert_same_run(reference, result)
